"""Snapshots: naming, manifest, verification, retention, and no password anywhere."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from bot.errors import ProviderError, SnapshotInvalidError
from providers.postgres.cluster import free_port
from providers.postgres.snapshot import (
    apply_retention,
    create_snapshot,
    list_snapshots,
    verify_snapshot,
)
from providers.storage import LocalStorage

pytestmark = pytest.mark.postgres


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "backups")


@pytest.fixture
def app_url(pg_url: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items (id serial PRIMARY KEY, body text, meta jsonb);"
            "INSERT INTO items (body, meta) SELECT repeat(md5(i::text), 4), "
            "jsonb_build_object('i', i) FROM generate_series(1, 4000) i;"
            "CREATE SCHEMA drizzle;"
            "CREATE TABLE drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash text, "
            "created_at bigint);"
            "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) "
            "VALUES ('h1', 1700000000000), ('h2', 1700000500000);"
        )
    return pg_url


def all_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(("fmt", "suffix"), [("directory", ".dir"), ("sql.gz", ".sql.gz")])
def test_snapshot_name_manifest_and_progress(app_url, storage, pg_cluster, fmt, suffix):
    seen: list[int] = []
    now = datetime(2025, 1, 15, 10, 30, 0, tzinfo=UTC)
    snap = create_snapshot(app_url, storage, format=fmt, now=now, progress=seen.append)
    assert snap.name == "snapshot-20250115-103000"
    assert (storage.root / (snap.name + suffix)).exists()
    manifest = json.loads((storage.root / f"{snap.name}.manifest.json").read_text())
    assert manifest["database"] == app_url.rsplit("/", 1)[1]
    assert manifest["server_version"].startswith(str(pg_cluster.major_version))
    assert manifest["format"] == fmt
    assert manifest["migrations_head"]["hash"] == "h2"
    assert manifest["row_counts"] == {"drizzle.__drizzle_migrations": 2, "public.items": 4000}
    assert manifest["size"] == snap.size > 0
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in manifest["files"].values())
    assert manifest["created_at"].startswith("2025-01-15T10:30:00")
    assert manifest["duration_seconds"] > 0
    assert seen and seen[-1] == snap.size
    assert seen == sorted(seen)
    # a second snapshot in the same second gets its own name
    again = create_snapshot(app_url, storage, format=fmt, now=now)
    assert again.name == "snapshot-20250115-103000-2"
    assert [s.name for s in list_snapshots(storage)] == [again.name, snap.name]


def test_migrations_table_is_a_parameter_and_may_be_absent(app_url, storage):
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE _drizzle_migrations (id serial PRIMARY KEY, hash text)")
        conn.execute("INSERT INTO _drizzle_migrations (hash) VALUES ('runbook')")
    snap = create_snapshot(app_url, storage, migrations_table="_drizzle_migrations")
    assert snap.manifest["migrations_head"]["hash"] == "runbook"
    snap = create_snapshot(app_url, storage, migrations_table="nope.missing", verify=False)
    assert snap.manifest["migrations_head"] is None


def test_row_counts_are_those_of_the_dumped_snapshot(app_url, storage):
    """Rows written while pg_dump runs are neither counted nor dumped."""
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(app_url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO items (body) VALUES ('late')")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        snap = create_snapshot(app_url, storage, format="sql.gz")
    finally:
        stop.set()
        thread.join()
    import gzip

    text = gzip.decompress((storage.root / snap.data_key).read_bytes()).decode()
    block = text.split("COPY public.items")[1].split("\\.")[0]
    assert block.count("\n") - 1 == snap.manifest["row_counts"]["public.items"]


def test_tampered_manifest_or_extra_file_is_refused(app_url, storage):
    snap = create_snapshot(app_url, storage)
    (storage.root / snap.data_key / "9999.dat.gz").write_bytes(b"x")
    with pytest.raises(SnapshotInvalidError, match="unexpected file"):
        verify_snapshot(storage, snap.name)
    (storage.root / snap.data_key / "9999.dat.gz").unlink()
    verify_snapshot(storage, snap.name)
    (storage.root / snap.manifest_key).write_text("{not json")
    with pytest.raises(SnapshotInvalidError, match="manifest is unreadable"):
        verify_snapshot(storage, snap.name)


def test_garbage_toc_is_refused(app_url, storage):
    """Checksums of a manifest rewritten to match garbage still fail the TOC test."""
    snap = create_snapshot(app_url, storage)
    toc = storage.root / snap.data_key / "toc.dat"
    toc.write_bytes(b"garbage" * 100)
    import hashlib

    manifest = json.loads((storage.root / snap.manifest_key).read_text())
    manifest["files"]["toc.dat"] = {
        "size": toc.stat().st_size,
        "sha256": hashlib.sha256(toc.read_bytes()).hexdigest(),
    }
    (storage.root / snap.manifest_key).write_text(json.dumps(manifest))
    with pytest.raises(SnapshotInvalidError, match="table of contents"):
        verify_snapshot(storage, snap.name)


def test_wrong_password_is_clear_and_secret_free(pg_cluster, app_url, storage):
    db = app_url.rsplit("/", 1)[1]
    wrong = "Wr0ngPassw0rd-xyz"
    url = f"postgresql://postgres:{wrong}@127.0.0.1:{pg_cluster.port}/{db}"
    with pytest.raises(ProviderError) as err:
        create_snapshot(url, storage)
    msg = str(err.value)
    assert "password authentication failed" in msg
    assert wrong not in msg and pg_cluster.password not in msg
    assert list_snapshots(storage) == []


def test_unreachable_server_is_clear(storage):
    url = f"postgresql://postgres:S3cretPw-abc@127.0.0.1:{free_port()}/app"
    with pytest.raises(ProviderError, match="unreachable") as err:
        create_snapshot(url, storage)
    assert "S3cretPw-abc" not in str(err.value)


def test_password_never_on_command_line_or_in_files(app_url, storage, pg_cluster):
    """While pg_dump runs, `ps` shows no password; the manifest and archive hold none."""
    seen_cmdlines: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            seen_cmdlines.extend(ln for ln in out.splitlines() if "pg_dump" in ln)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        for fmt in ("directory", "sql.zst"):
            create_snapshot(app_url, storage, format=fmt)
    finally:
        stop.set()
        thread.join()
    assert not any(pg_cluster.password in ln for ln in seen_cmdlines)
    assert pg_cluster.password not in all_text(storage.root)


def make_snapshot_files(storage: LocalStorage, when: datetime, *, valid: bool = True) -> str:
    """A real snapshot is slow to make 8 times; plain ones made from text are equivalent here."""
    import gzip

    name = "snapshot-" + when.strftime("%Y%m%d-%H%M%S")
    storage.root.mkdir(parents=True, exist_ok=True)
    body = b"SELECT 1;\n-- PostgreSQL database dump complete\n"
    data = gzip.compress(body)
    (storage.root / f"{name}.sql.gz").write_bytes(data if valid else data[:10])
    return name


def test_retention_keeps_newest_and_recent_and_the_newest_verified(storage):
    now = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
    names = [make_snapshot_files(storage, now - timedelta(days=d)) for d in range(8)]
    result = apply_retention(storage, keep_last=2, keep_days=4, now=now)
    assert result.kept == names[:5]  # 0..4 days old (4 days exactly is kept)
    assert result.deleted == names[5:]
    assert [s.name for s in list_snapshots(storage)] == names[:5]

    result = apply_retention(storage, keep_last=3, now=now)
    assert result.kept == names[:3]

    # without rules nothing is deleted
    assert apply_retention(storage, now=now).deleted == []


def test_retention_never_deletes_newest_verified(storage):
    now = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
    broken = [make_snapshot_files(storage, now - timedelta(hours=h), valid=False) for h in (1, 2)]
    good = make_snapshot_files(storage, now - timedelta(days=40))
    older = make_snapshot_files(storage, now - timedelta(days=50))
    result = apply_retention(storage, keep_last=1, keep_days=7, now=now, dry_run=True)
    assert result.protected == good
    assert set(result.kept) == {*broken, good}
    assert result.deleted == [older]
    assert (storage.root / f"{older}.sql.gz").exists()  # dry run
    apply_retention(storage, keep_last=1, keep_days=7, now=now)
    assert not (storage.root / f"{older}.sql.gz").exists()
    assert (storage.root / f"{good}.sql.gz").exists()


def write_config(tmp_path: Path, backups: Path, keep_last: int = 10) -> Path:
    config = tmp_path / "rollbot.toml"
    config.write_text(
        f"""
[environments.dev]
tier = "development"
database_url_env = "ROLLBOT_TEST_DB_URL"
backups = "{backups}"
retention = {{ keep_last = {keep_last}, keep_days = 1 }}
"""
    )
    return config


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os
    import sys

    rollbot = Path(sys.executable).with_name("rollbot")
    return subprocess.run(
        [str(rollbot), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_cli_snapshot_list_verify_and_retention(app_url, tmp_path, pg_cluster):
    backups = tmp_path / "backups"
    config = write_config(tmp_path, backups, keep_last=1)
    env = {"ROLLBOT_TEST_DB_URL": app_url}
    first = run_cli(["--config", str(config), "snapshot", "--env", "dev"], env)
    assert first.returncode == 0, first.stderr
    name = re.search(r"verified: (snapshot-\S+)", first.stdout).group(1)
    assert "migrations: drizzle.__drizzle_migrations head #2 h2" in first.stdout
    assert "snapshot" in first.stderr and "/s" in first.stderr  # the progress line
    listed = run_cli(["--config", str(config), "snapshot", "--env", "dev", "--list"], env)
    assert listed.returncode == 0 and name in listed.stdout
    checked = run_cli(["--config", str(config), "snapshot", "--env", "dev", "--verify", name], env)
    assert checked.returncode == 0 and f"verified: {name}" in checked.stdout
    for proc in (first, listed, checked):
        assert pg_cluster.password not in proc.stdout + proc.stderr

    # tamper: one line, exit 2, no traceback
    data_file = max((backups / f"{name}.dir").iterdir(), key=lambda p: p.stat().st_size)
    data_file.write_bytes(data_file.read_bytes()[:-10])
    bad = run_cli(["--config", str(config), "snapshot", "--env", "dev", "--verify", name], env)
    assert bad.returncode == 2
    assert bad.stderr.startswith("rollbot: snapshot ") and "truncated" in bad.stderr
    assert "Traceback" not in bad.stderr

    # a new snapshot applies retention (keep_last=1, keep_days=1): the 9-day-old one goes
    old = make_snapshot_files(LocalStorage(backups), datetime.now(UTC) - timedelta(days=9))
    again = run_cli(["--config", str(config), "snapshot", "--env", "dev"], env)
    assert again.returncode == 0, again.stderr
    newest = re.search(r"verified: (snapshot-\S+)", again.stdout).group(1)
    assert f"retention: deleted {old}" in again.stdout
    assert f"newest verified: {newest}" in again.stdout
    assert not (backups / f"{old}.sql.gz").exists()
    dry = run_cli(
        ["--config", str(config), "snapshot", "--env", "dev", "--prune", "--dry-run"], env
    )
    assert dry.returncode == 0 and "kept 2 snapshot(s)" in dry.stdout


def test_cli_wrong_password_is_one_clear_line(pg_cluster, app_url, tmp_path):
    config = write_config(tmp_path, tmp_path / "b")
    db = app_url.rsplit("/", 1)[1]
    bad_url = f"postgresql://postgres:Nope-Not-It-42@127.0.0.1:{pg_cluster.port}/{db}"
    proc = run_cli(
        ["--config", str(config), "snapshot", "--env", "dev"], {"ROLLBOT_TEST_DB_URL": bad_url}
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("rollbot: ")
    assert "password authentication failed" in proc.stderr
    assert "Nope-Not-It-42" not in proc.stdout + proc.stderr
