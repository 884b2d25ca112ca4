"""Restore: verified first, safety snapshot always, swap and in-place round trips, refusals."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from bot.errors import NotFoundError, ProviderError, SnapshotInvalidError
from providers.postgres.checksums import table_checksums
from providers.postgres.restore import plan_restore, restore_snapshot
from providers.postgres.snapshot import create_snapshot, list_snapshots, verify_snapshot
from providers.postgres.tools import child_env, find_client_tools
from providers.storage import LocalStorage

pytestmark = pytest.mark.postgres

SCHEMAS = ("public", "drizzle")


def seed(url: str, rows: int = 3000) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, profile jsonb);
            CREATE TABLE orders (id bigserial PRIMARY KEY, user_id int REFERENCES users(id),
                                 total numeric(10,2), note text, created timestamptz);
            CREATE INDEX orders_user ON orders(user_id);
            CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
            CREATE SCHEMA drizzle;
            CREATE TABLE drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL,
                                                       created_at bigint);
            INSERT INTO drizzle.__drizzle_migrations (hash, created_at)
                VALUES ('aaa111', 1700000000000), ('bbb222', 1700000100000);
            """
        )
        conn.execute(
            "INSERT INTO users (email, profile) SELECT 'u' || i || '@example.com', "
            "jsonb_build_object('name', 'User ' || i, 'tags', jsonb_build_array(i %% 7, 'x')) "
            "FROM generate_series(1, %s) i",
            (rows,),
        )
        conn.execute(
            "INSERT INTO orders (user_id, total, note, created) SELECT 1 + i %% %s, "
            "(i %% 500) + 0.25, repeat(md5(i::text), 3), "
            "'2025-01-01'::timestamptz + i * interval '1 minute' FROM generate_series(1, %s) i",
            (rows, rows * 2),
        )


def checksums(url: str) -> dict[str, tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return table_checksums(conn, SCHEMAS)


def damage(url: str) -> None:
    """What a bad migration does: drop a column's data and add a table."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE id % 3 = 0")
        conn.execute("ALTER TABLE users DROP COLUMN profile")
        conn.execute("CREATE TABLE junk (x int)")
        conn.execute(
            "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('bad', 1)"
        )


def databases(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "backups")


@pytest.mark.parametrize("fmt", ["directory", "sql.zst"])
def test_swap_round_trip_preserves_checksums_and_keeps_old_db(pg_url, storage, fmt):
    seed(pg_url)
    before = checksums(pg_url)
    snap = create_snapshot(pg_url, storage, format=fmt)
    damage(pg_url)
    damaged = checksums(pg_url)
    assert damaged != before

    plan = plan_restore(pg_url, storage, snap.name)
    text = str(plan)
    assert snap.name in text and "May be lost" in text and plan.kept_as in text

    seen: list[int] = []
    result = restore_snapshot(pg_url, storage, snap.name, progress=seen.append)
    assert checksums(pg_url) == before
    assert seen and seen[-1] >= snap.size * 0.9
    assert result.kept_database and result.kept_database.startswith(result.database)
    kept_url = pg_url.rsplit("/", 1)[0] + "/" + result.kept_database
    assert checksums(kept_url) == damaged  # the old state is one rename away
    assert not any("_restoring_" in d for d in databases(pg_url))
    # the safety snapshot exists, verifies, and holds the damaged state
    safety = verify_snapshot(storage, result.safety_snapshot)
    assert "safety" in safety.manifest["label"]
    assert safety.manifest["migrations_head"]["hash"] == "bad"
    assert result.durations["total"] > 0


def test_in_place_round_trip_removes_objects_created_after_snapshot(pg_url, storage):
    seed(pg_url)
    before = checksums(pg_url)
    snap = create_snapshot(pg_url, storage)
    damage(pg_url)
    result = restore_snapshot(pg_url, storage, snap.name, mode="in_place")
    assert result.kept_database is None
    assert checksums(pg_url) == before
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('public.junk')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM big_orders").fetchone()[0] > 0
    assert verify_snapshot(storage, result.safety_snapshot)


def test_runbook_plain_sql_gz_made_by_pg_dump_pipe_gzip(pg_url, pg_cluster, storage):
    """The runbook's own backups: `pg_dump $DATABASE_URL | gzip > backups/snapshot-...sql.gz`."""
    seed(pg_url)
    before = checksums(pg_url)
    tools = find_client_tools(pg_cluster.major_version)
    safe_url, env = child_env(pg_url)
    storage.root.mkdir(parents=True)
    target = storage.root / "snapshot-20250115-103000.sql.gz"
    with open(target, "wb") as out:
        dump = subprocess.Popen([tools.pg_dump, "-d", safe_url], env=env, stdout=subprocess.PIPE)
        subprocess.run(["gzip"], stdin=dump.stdout, stdout=out, check=True)
        assert dump.wait() == 0
    snap = verify_snapshot(storage, "snapshot-20250115-103000.sql.gz")
    assert snap.manifest is None and snap.format == "sql.gz"
    damage(pg_url)
    restore_snapshot(pg_url, storage, snap.name)
    assert checksums(pg_url) == before


def corrupt_truncate(storage: LocalStorage, snap) -> None:
    path = max(storage.root.joinpath(snap.data_key).iterdir(), key=lambda p: p.stat().st_size)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_tamper(storage: LocalStorage, snap) -> None:
    path = max(storage.root.joinpath(snap.data_key).iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def corrupt_missing(storage: LocalStorage, snap) -> None:
    shutil.rmtree(storage.root / snap.data_key)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (corrupt_truncate, "truncated"),
        (corrupt_tamper, "sha256"),
        (corrupt_missing, "not found"),
    ],
)
def test_bad_snapshot_is_refused_and_target_unchanged(pg_url, storage, corrupt, message):
    seed(pg_url, rows=500)
    snap = create_snapshot(pg_url, storage)
    damage(pg_url)
    before = checksums(pg_url)
    dbs = databases(pg_url)
    corrupt(storage, snap)
    with pytest.raises(SnapshotInvalidError, match=message):
        restore_snapshot(pg_url, storage, snap.name)
    assert checksums(pg_url) == before
    assert databases(pg_url) == dbs
    assert [s.name for s in list_snapshots(storage)] == (
        [snap.name] if message != "not found" else []
    )


def test_truncated_plain_gzip_is_refused(pg_url, storage):
    seed(pg_url, rows=500)
    snap = create_snapshot(pg_url, storage, format="sql.gz")
    path = storage.root / snap.data_key
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    path.with_name(snap.manifest_key).unlink()  # without its manifest, only gzip can tell
    before = checksums(pg_url)
    with pytest.raises(SnapshotInvalidError, match=r"decompress|ends early"):
        restore_snapshot(pg_url, storage, snap.name)
    assert checksums(pg_url) == before


def test_failed_load_drops_new_database_and_leaves_target(pg_url, storage):
    """A dump that does not load (here: plain SQL with an error) never reaches the swap."""
    seed(pg_url, rows=200)
    before = checksums(pg_url)
    dbs = databases(pg_url)
    storage.root.mkdir(parents=True)
    body = (
        b"CREATE TABLE ok (x int);\nSELECT no_such_function();\n"
        + b"-- PostgreSQL database dump complete\n"
    )
    (storage.root / "snapshot-20250101-000000.sql.gz").write_bytes(gzip.compress(body))
    with pytest.raises(ProviderError, match="no_such_function"):
        restore_snapshot(pg_url, storage, "snapshot-20250101-000000")
    assert checksums(pg_url) == before
    new_dbs = databases(pg_url)
    assert new_dbs == dbs


def test_unknown_snapshot_and_mode(pg_url, storage):
    with pytest.raises(SnapshotInvalidError, match="not found"):
        restore_snapshot(pg_url, storage, "snapshot-20990101-000000")
    with pytest.raises(ProviderError, match="mode"):
        restore_snapshot(pg_url, storage, "x", mode="sideways")  # type: ignore[arg-type]
    assert NotFoundError  # imported for symmetry with the storage tests


class FailingWrites(LocalStorage):
    """Storage whose writes fail once armed: the safety snapshot cannot be written."""

    armed = False

    def open_write(self, key):
        if self.armed:
            raise ProviderError(f"disk full writing {key}")
        return super().open_write(key)


@pytest.mark.parametrize("mode", ["swap", "in_place"])
def test_no_safety_snapshot_means_no_restore(pg_url, tmp_path, mode):
    seed(pg_url, rows=300)
    storage = FailingWrites(tmp_path / "backups")
    snap = create_snapshot(pg_url, storage)
    damage(pg_url)
    before = checksums(pg_url)
    dbs = databases(pg_url)
    storage.armed = True
    with pytest.raises(ProviderError, match="disk full"):
        restore_snapshot(pg_url, storage, snap.name, mode=mode)
    assert checksums(pg_url) == before
    assert databases(pg_url) == dbs
    assert [s.name for s in list_snapshots(storage)] == [snap.name]
