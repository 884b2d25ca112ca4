"""CLI conventions an operations team expects (issue 10): SQL-only stdout for drafts,
``--version``, stable ``--json``, quiet progress off a terminal, closed pipes, and
``check-config`` reporting everything in one pass."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from bot.steps import StepResult
from handlers.cli import main
from handlers.commands.incidents import TerminalSink
from handlers.progress import TransferProgress
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.snapshot import create_snapshot
from providers.storage import LocalStorage
from tests.core_fixtures import write_config
from tests.test_drizzle_apply import make_folder
from tests.test_pg_snapshot import make_snapshot_files
from tests.waiting import wait_until

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "drizzle"
ROLLBOT = Path(sys.executable).with_name("rollbot")


def rollbot_shell(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``script`` under bash with pipefail: the pipeline fails if rollbot does."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "ROLLBOT": str(ROLLBOT), **env},
        timeout=120,
    )


def parse_json(out: str) -> Any:
    """The whole of stdout is one JSON document (nothing else printed there)."""
    return json.loads(out)


def assert_iso(value: str | None) -> None:
    assert value is not None and value.endswith("Z"), value
    datetime.fromisoformat(value)


# --------------------------------------------------------------------------- forward-fix


@pytest.mark.postgres
@pytest.mark.parametrize("sample", ["vercel__ai-chatbot", "cgoinglove__better-chatbot"])
def test_forward_fix_draft_pipes_into_psql(
    pg_cluster: ThrowawayCluster, pg_url: str, sample: str
) -> None:
    """`rollbot forward-fix draft --migrations DIR | psql` applies after the migrations."""
    folder = SAMPLES / sample
    journal = read_journal(folder)
    apply_migrations(pg_url, journal)
    before = _columns(pg_url)
    psql = pg_cluster.bindir / "psql"
    proc = rollbot_shell(
        '"$ROLLBOT" forward-fix draft --migrations "$DIR" | "$PSQL" -X -q -v ON_ERROR_STOP=1 "$URL"',
        DIR=str(folder),
        PSQL=str(psql),
        URL=pg_url,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ERROR" not in proc.stderr
    assert "nothing written" in proc.stderr  # the hint still reaches the person
    assert _columns(pg_url) != before  # the reverse did something


def _columns(url: str) -> set[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return {(r[0], r[1], r[2]) for r in rows}


def test_forward_fix_notes_are_sql_comments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(
        tmp_path,
        {
            "0000_init": 'CREATE TABLE "users" ("id" serial PRIMARY KEY, "nick" text);',
            "0001_x": 'ALTER TABLE "users" ADD COLUMN "c" int;\n--> statement-breakpoint\n'
            'UPDATE "users" SET "c" = 1;',
        },
    )
    assert main(["forward-fix", "draft", "--migrations", str(folder)]) == 0
    out, err = capsys.readouterr()
    code = [line for line in out.splitlines() if line.strip() and not line.startswith("--")]
    assert code == ['ALTER TABLE "users" DROP COLUMN "c";']
    assert "-- NEEDS A PERSON: 0001_x.sql statement 2" in out
    assert err.startswith("(nothing written")


# --------------------------------------------------------------------------- --version


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"rollbot {importlib.metadata.version('rollbot')}"


# --------------------------------------------------------------------------- --json

INCIDENT_KEYS = {
    "ref",
    "id",
    "state",
    "environment",
    "tier",
    "method",
    "description",
    "requester",
    "source",
    "follows",
    "created_at",
    "updated_at",
    "closed_at",
}
SHOW_KEYS = INCIDENT_KEYS | {"path", "plan_hash", "root_cause", "approvals", "steps", "checklists"}
STEP_KEYS = {
    "seq",
    "kind",
    "title",
    "status",
    "destructive",
    "plan",
    "attempt",
    "queued_at",
    "started_at",
    "finished_at",
    "summary",
    "error",
    "lines",
}


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ROLLBOT_TEST_PROD_URL", "postgresql://app:s3cr3t-pw@127.0.0.1:1/prod")
    return str(write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}"))


@pytest.fixture
def incident_ref(cfg: str) -> str:
    """A production app rollback with a plan and one approval, nothing run."""
    from handlers.runtime import start_runtime

    rt = start_runtime(cfg)
    bot = rt.bot
    incident = bot.open_incident(
        "alice", "deploy broke login; url postgresql://app:s3cr3t-pw@db/prod", "production"
    )
    bot.answer(incident.id, "app_broken", "alice")
    bot.choose_method(incident.id, "app_rollback", "alice")
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.tick(incident.id, "after.verify_database", "carol")
    return incident.ref


def test_incidents_json(cfg: str, incident_ref: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--config", cfg, "incidents", "--json"]) == 0
    doc = parse_json(capsys.readouterr().out)
    assert set(doc) == {"incidents"}
    (one,) = doc["incidents"]
    assert set(one) == INCIDENT_KEYS
    assert one["ref"] == incident_ref and one["tier"] == "production"
    assert one["method"] == "app_rollback" and one["closed_at"] is None
    assert_iso(one["created_at"])
    assert "s3cr3t-pw" not in json.dumps(doc)

    assert main(["--config", cfg, "cancel", incident_ref, "--as", "alice"]) == 0
    capsys.readouterr()
    assert main(["--config", cfg, "incidents", "--json"]) == 0
    assert parse_json(capsys.readouterr().out) == {"incidents": []}
    assert main(["--config", cfg, "incidents", "--all", "--json"]) == 0
    (closed,) = parse_json(capsys.readouterr().out)["incidents"]
    assert closed["state"] == "cancelled"
    assert_iso(closed["closed_at"])


def test_show_json(cfg: str, incident_ref: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--config", cfg, "show", incident_ref, "--json"]) == 0
    doc = parse_json(capsys.readouterr().out)
    assert set(doc) == SHOW_KEYS
    assert doc["path"] == ["production", "app_broken"]
    assert set(doc["approvals"]) == {"valid", "needed", "by"}
    assert (doc["approvals"]["valid"], doc["approvals"]["needed"]) == (1, 1)
    (approval,) = doc["approvals"]["by"]
    assert set(approval) == {"approver", "at", "expires_at", "valid"}
    assert approval["approver"] == "bob" and approval["valid"] is True
    assert_iso(approval["expires_at"])
    assert doc["steps"] and all(set(s) == STEP_KEYS for s in doc["steps"])
    assert doc["steps"][0]["status"] in ("pending", "queued")
    assert set(doc["checklists"]) == {"before", "after"}
    items = {i["id"]: i for i in doc["checklists"]["before"] + doc["checklists"]["after"]}
    assert all(set(i) == {"id", "text", "ticked", "by", "at"} for i in items.values())
    assert items["after.verify_database"]["ticked"] is True
    assert items["after.verify_database"]["by"] == "carol"
    assert "s3cr3t-pw" not in json.dumps(doc)


def test_audit_json(cfg: str, incident_ref: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--config", cfg, "audit", incident_ref, "--json"]) == 0
    doc = parse_json(capsys.readouterr().out)
    assert set(doc) == {"incident", "events"}
    assert set(doc["incident"]) == INCIDENT_KEYS
    assert all(set(e) == {"id", "at", "actor", "kind", "message", "data"} for e in doc["events"])
    assert [e["id"] for e in doc["events"]] == sorted(e["id"] for e in doc["events"])
    assert any("approved by bob" in e["message"] for e in doc["events"])
    for event in doc["events"]:
        assert_iso(event["at"])
    assert "s3cr3t-pw" not in json.dumps(doc)


def test_json_errors_stay_on_stderr(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", cfg, "show", "INC-404", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "rollbot: no incident 'INC-404'"


SNAPSHOT_KEYS = {
    "name",
    "format",
    "created_at",
    "size",
    "files",
    "has_manifest",
    "database",
    "server",
    "server_version",
    "label",
    "purpose",
    "incident",
    "migrations_table",
    "migrations_head",
    "tables",
    "rows",
    "duration_seconds",
}


@pytest.mark.postgres
def test_snapshot_list_json(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backups = tmp_path / "backups"
    storage = LocalStorage(backups)
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)")
    real = create_snapshot(pg_url, storage, format="sql.gz", label="before the deploy")
    bare = make_snapshot_files(storage, datetime(2025, 1, 15, 10, 30))
    config = tmp_path / "rollbot.toml"
    config.write_text(
        '[environments.dev]\ntier = "development"\ndatabase_url_env = "ROLLBOT_TEST_DB_URL"\n'
        f'backups = "{backups}"\n'
    )
    monkeypatch.setenv("ROLLBOT_TEST_DB_URL", pg_url)
    assert main(["--config", str(config), "snapshot", "--env", "dev", "--list", "--json"]) == 0
    doc = parse_json(capsys.readouterr().out)
    assert set(doc) == {"location", "snapshots"}
    assert [s["name"] for s in doc["snapshots"]] == [real.name, bare]
    assert all(set(s) == SNAPSHOT_KEYS for s in doc["snapshots"])
    newest, plain = doc["snapshots"]
    assert newest["has_manifest"] and newest["label"] == "before the deploy"
    assert (newest["tables"], newest["rows"]) == (1, 2) and newest["size"] > 0
    assert plain["has_manifest"] is False and plain["database"] is None
    assert plain["created_at"] == "2025-01-15T10:30:00Z"
    assert_iso(newest["created_at"])

    assert main(["--config", str(config), "snapshot", "--env", "dev", "--json"]) == 2
    assert "--json goes with --list" in capsys.readouterr().err


@pytest.fixture
def blocking_pair(pg_url: str) -> Iterator[tuple[int, int]]:
    """(blocker pid, waiter pid): one session holds a lock, another waits for it."""
    with psycopg.connect(pg_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE t (id int)")
    blocker = psycopg.connect(pg_url)
    blocker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # stays idle in transaction
    waiter = psycopg.connect(pg_url, autocommit=True)
    waiter_pid = waiter.info.backend_pid
    thread = threading.Thread(target=lambda: waiter.execute("SELECT * FROM t"), daemon=True)
    thread.start()
    with psycopg.connect(pg_url, autocommit=True) as probe:
        wait_until(
            lambda: probe.execute(
                "SELECT cardinality(pg_blocking_pids(%s)) > 0", (waiter_pid,)
            ).fetchone()[0],
            "the waiter to wait for the blocker",
        )
    try:
        yield blocker.info.backend_pid, waiter_pid
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(timeout=30)
        waiter.close()


@pytest.mark.postgres
def test_triage_json(
    tmp_path: Path,
    pg_url: str,
    blocking_pair: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker, waiter = blocking_pair
    config = tmp_path / "rollbot.toml"
    config.write_text(
        '[environments.dev]\ntier = "development"\ndatabase_url_env = "ROLLBOT_TEST_DB_URL"\n'
    )
    monkeypatch.setenv("ROLLBOT_TEST_DB_URL", pg_url)
    assert main(["--config", str(config), "triage", "--env", "dev", "--json"]) == 0
    doc = parse_json(capsys.readouterr().out)
    assert set(doc) == {
        "environment",
        "tier",
        "database",
        "taken_at",
        "own_pid",
        "backends",
        "roots",
        "tree",
    }
    assert doc["environment"] == "dev" and doc["roots"] == [blocker]
    assert_iso(doc["taken_at"])
    by_pid = {b["pid"]: b for b in doc["backends"]}
    assert set(by_pid[waiter]) == {
        "pid",
        "user",
        "application",
        "client",
        "state",
        "wait_event",
        "backend_start",
        "query_start",
        "query_seconds",
        "transaction_seconds",
        "query",
        "blocked_by",
        "locks",
    }
    assert by_pid[waiter]["blocked_by"] == [blocker]
    assert any(not lock["granted"] for lock in by_pid[waiter]["locks"])
    assert any(str(blocker) in line for line in doc["tree"])
    assert urlsplit(pg_url).password not in json.dumps(doc)

    code = main(["--config", str(config), "triage", "--env", "dev", "--json", "--cancel", "1"])
    assert code == 2 and "--json only lists" in capsys.readouterr().err


@pytest.mark.postgres
def test_migrations_status_json(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(
        tmp_path / "m",
        {"0000_a": "CREATE TABLE a (id int);", "0001_b": "CREATE TABLE b (id int);"},
        whens={"0000_a": 1736937000000, "0001_b": 1736937060000},
    )
    apply_migrations(pg_url, read_journal(folder), upto=0)
    argv = ["migrations", "status", "--migrations", str(folder), "--database-url", pg_url]
    assert main([*argv, "--json"]) == 0
    doc = parse_json(capsys.readouterr().out)
    assert set(doc) == {
        "table",
        "applied",
        "pending",
        "newest_applied",
        "drift",
        "backdated",
        "unknown_rows",
        "orphans",
        "problems",
    }
    assert [e["tag"] for e in doc["applied"]] == ["0000_a"]
    assert [e["tag"] for e in doc["pending"]] == ["0001_b"]
    entry = doc["applied"][0]
    assert set(entry) == {"idx", "tag", "file", "when", "created_at", "hash"}
    assert entry["created_at"] == "2025-01-15T10:30:00Z" and entry["when"] == 1736937000000
    assert doc["newest_applied"] == "0000_a" and doc["problems"] == []

    (folder / "9999_stray.sql").write_text("SELECT 1;")
    (folder / "0000_a.sql").write_text("CREATE TABLE a (id bigint);")
    assert main([*argv, "--json"]) == 1  # problems keep their exit code
    doc = parse_json(capsys.readouterr().out)
    assert [d["file"] for d in doc["drift"]] == ["0000_a.sql"]
    assert doc["orphans"] == ["9999_stray.sql"] and len(doc["problems"]) == 2


# --------------------------------------------------------------------------- progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _step(seq: int) -> Any:
    return SimpleNamespace(id=seq, seq=seq, title=f"restore #{seq}")


def test_run_off_a_terminal_prints_one_line_per_step_start_and_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = io.StringIO()
    sink = TerminalSink(err)
    incident = SimpleNamespace(ref="INC-7")
    for seq in (1, 2):
        sink.step_started(incident, _step(seq))  # type: ignore[arg-type]
        for mb in range(656):
            sink.step_progress(incident, _step(seq), f"restore: {mb / 10:.1f} MB")  # type: ignore[arg-type]
        sink.step_finished(incident, _step(seq), StepResult(True, "restored"))  # type: ignore[arg-type]
    sink.close()
    assert err.getvalue() == ""
    assert capsys.readouterr().out.splitlines() == [
        "[INC-7] step 1: restore #1 ...",
        "[INC-7] step 1 ok: restored",
        "[INC-7] step 2: restore #2 ...",
        "[INC-7] step 2 ok: restored",
    ]


def test_run_on_a_terminal_shows_a_live_display(capsys: pytest.CaptureFixture[str]) -> None:
    err = Tty()
    sink = TerminalSink(err)
    incident = SimpleNamespace(ref="INC-7")
    sink.step_started(incident, _step(1))  # type: ignore[arg-type]
    sink.step_progress(incident, _step(1), "restore: 4.2 MB")  # type: ignore[arg-type]
    assert sink.live is not None
    sink.live.progress.refresh()
    sink.step_finished(incident, _step(1), StepResult(True, "restored"))  # type: ignore[arg-type]
    sink.close()
    assert "restore: 4.2 MB" in err.getvalue() and "step 1: restore #1" in err.getvalue()
    assert "[INC-7] step 1 ok: restored" in capsys.readouterr().out
    quiet = TerminalSink(Tty(), progress=False)  # --no-progress
    assert quiet.live is None


def test_transfer_off_a_terminal_is_two_lines() -> None:
    err = io.StringIO()
    progress = TransferProgress(err, 5_000_000, "snapshot")
    for done in range(0, 5_000_000, 1_000):
        progress(done)
    progress.finish(5_000_000)
    lines = err.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("snapshot: writing") and "/s" in lines[1]


# --------------------------------------------------------------------------- closed pipe


def test_closed_pipe_ends_quietly(cfg: str, incident_ref: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before rollbot writes a byte
    try:
        proc = subprocess.run(
            [str(ROLLBOT), "--config", cfg, "show", incident_ref],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_show_into_head_exits_0(cfg: str, incident_ref: str) -> None:
    proc = rollbot_shell(
        '"$ROLLBOT" --config "$CFG" show "$REF" | head -1', CFG=cfg, REF=incident_ref
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(incident_ref) and proc.stdout.count("\n") == 1
    assert "BrokenPipeError" not in proc.stderr and "unexpected error" not in proc.stderr


def test_long_output_into_head_exits_0() -> None:
    """More than a pipe buffer, so the write really meets the closed pipe."""
    proc = rollbot_shell(
        '"$ROLLBOT" migrations show -n 200 --migrations "$DIR" | head -1',
        DIR=str(SAMPLES / "Dokploy__dokploy"),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout.startswith("== ")


# --------------------------------------------------------------------------- check-config

SEVERAL_PROBLEMS = """
[approvals]
userz = ["U1"]

[approvals.staging]
min_approvals = 9

[approvals.production]
requester_may_approve = true

[business_hours]
timezone = "Mars/Olympus"
start = "18:00"
end = "09:00"

[environments.Prod]
tier = "production"
database_url_env = "DATABASE_URL_PRODUCTION"

[environments.staging]
tier = "staging"
provider = "neon"
database_url_env = "lowercase name"
"""


def test_check_config_reports_every_problem_in_one_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rollbot.toml"
    path.write_text(SEVERAL_PROBLEMS)
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and all(line.startswith(f"rollbot: {path}: ") for line in lines)
    expected = [
        "approvals.userz: unknown setting",
        "approvals.staging.min_approvals: Input should be less than or equal to 5",
        "approvals.production.requester_may_approve: must be false in production",
        "business_hours.timezone: unknown time zone 'Mars/Olympus'",
        "business_hours.end: start 18:00:00 must be before end 09:00:00",
        "environments.Prod: environment names must be lowercase words, not 'Prod'",
        "environments.staging.database_url_env: 'lowercase name' is not an environment",
        "environments.staging: provider 'neon' needs a [neon] section",
    ]
    for want in expected:
        assert sum(want in line for line in lines) == 1, (want, lines)
    assert len(lines) == len(expected)


def test_check_config_lists_environments_per_tier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rollbot.toml"
    path.write_text(
        "".join(
            f'[environments.{name}]\ntier = "{tier}"\ndatabase_url_env = "DB_{i}"\n'
            for i, (name, tier) in enumerate(
                [("prod-eu", "production"), ("prod-us", "production"), ("qa", "staging")]
            )
        )
    )
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "    development: none\n" in out
    assert "    staging:     qa (postgres)\n" in out
    assert "    production:  prod-eu (postgres), prod-us (postgres)\n" in out
