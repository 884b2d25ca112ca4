"""Choosing what a restore restores: the default skips safety snapshots; CLI and shell pick.

Reading a restore time (the core's part) is tested in tests/core/test_restore_choice.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from bot.config import load_settings
from bot.executor import Executor
from bot.service import Rollbot
from handlers.cli import main
from handlers.runtime import register_provider_steps
from providers.postgres.snapshot import create_snapshot, list_snapshots
from providers.storage import open_storage
from tests.core_fixtures import write_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.postgres
JANUARY = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
MARCH = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


@pytest.fixture
def world(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Rollbot]:
    """Production with two good snapshots (January, March), then broken data."""
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("ROLLBOT_TEST_PROD_URL", pg_url)
    settings = load_settings(cfg)
    storage = open_storage(settings.environment("production").backups)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE payments AS SELECT g AS id, 10 AS amount FROM generate_series(1, 600) g"
        )
    create_snapshot(pg_url, storage, now=JANUARY)
    create_snapshot(pg_url, storage, now=MARCH)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM payments WHERE id > 500")  # the bad migration
    register_provider_steps()
    return cfg, Rollbot.open(settings)


def _restore_params(bot: Rollbot, ref: str) -> dict:
    return next(s.params for s in bot.get(ref).steps if s.kind == "postgres.restore")


def _restore_incident(bot: Rollbot, text: str) -> str:
    incident = bot.open_incident("alice", text, environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    bot.choose_method(incident.id, "pitr", "alice")
    return incident.ref


def test_after_a_restore_the_next_default_is_not_the_safety_snapshot(world, pg_url: str) -> None:
    _cfg, bot = world
    first = _restore_incident(bot, "payments lost")
    assert _restore_params(bot, first)["snapshot"] == "snapshot-20260310-080000"
    bot.request_approval(first, "alice")
    bot.approve(first, "bob")
    bot.start(first, "alice")
    assert Executor(bot).run_incident(parse_id(first)).state == "verifying"
    storage = open_storage(bot.settings.environment("production").backups)
    safety = list_snapshots(storage)[0]
    assert safety.replaced_state  # the newest snapshot is the broken state

    second = _restore_incident(bot, "payments lost again")
    assert _restore_params(bot, second)["snapshot"] == "snapshot-20260310-080000"
    sources = bot.restore_sources(second)
    flagged = [s for s in sources if s.warning]
    assert [s.name for s in flagged] == [safety.name] and "replaced" in flagged[0].warning
    assert [s.name for s in sources if s.chosen] == ["snapshot-20260310-080000"]

    bot.replan(second, "alice", snapshot=safety.name)  # a person may, and the plan says so
    plan = "\n".join(s.plan_text for s in bot.get(second).steps)
    assert "*" + safety.name + " is a SAFETY SNAPSHOT" in plan and "picked explicitly" in plan


def parse_id(ref: str) -> int:
    return int(ref.removeprefix("INC-"))


def test_cli_plans_a_chosen_snapshot_or_time_and_voids_approvals(
    world, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, bot = world
    ref = _restore_incident(bot, "payments lost")
    bot.request_approval(ref, "alice")
    bot.approve(ref, "bob")

    def cli(*args: str) -> int:
        return main(["--config", str(cfg), *args])

    assert cli("plan", ref, "--snapshot", "snapshot-20260110-080000", "--as", "alice") == 0
    out = capsys.readouterr().out
    assert "approvals start over" in out and "snapshot-20260110-080000" in out
    incident = bot.get(ref)
    assert incident.state == "method_chosen" and bot.approval_status(incident)[0] == 0

    assert cli("plan", ref, "--restore-to", "2026-02-01 00:00", "--as", "alice") == 0
    capsys.readouterr()
    assert _restore_params(bot, ref)["snapshot"] == "snapshot-20260110-080000"
    assert _restore_params(bot, ref)["before"] == "2026-02-01T00:00:00+00:00"

    assert cli("restore", "sources", ref) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [
        "snapshot-20260310-080000",
        "snapshot-20260110-080000",
    ]
    assert lines[1].endswith("\tchosen")

    assert cli("plan", ref, "--restore-to", "yesterday-ish", "--as", "alice") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a time like" in err[0]
    assert cli("plan", ref, "--snapshot", "snapshot-20990101-000000", "--as", "alice") == 2
    assert "not found" in capsys.readouterr().err


def test_shell_restores_another_snapshot(world, pg_url: str) -> None:
    cfg, bot = world
    answers = [
        "payments lost",
        "3",  # production
        "1",  # data corruption
        "1",  # point-in-time restore (recommended)
        "4",  # restore another snapshot, or to a time
        "2",  # the January snapshot (newest first)
        "1",  # request approval
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "--config", str(cfg), "shell", "--as", "alice"],
        input="\n".join(answers) + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "ROLLBOT_TEST_PROD_URL": pg_url},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Restore which snapshot?" in proc.stdout and "Traceback" not in proc.stderr
    (incident,) = bot.open_incidents()
    assert incident.state == "awaiting_approval"
    assert _restore_params(bot, incident.ref)["snapshot"] == "snapshot-20260110-080000"


def test_default_is_from_before_the_newest_migration(world, pg_url: str) -> None:
    _cfg, bot = world
    storage = open_storage(bot.settings.environment("production").backups)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA drizzle; CREATE TABLE drizzle.__drizzle_migrations "
            "(id serial PRIMARY KEY, hash text NOT NULL, created_at bigint)"
        )
        conn.execute("INSERT INTO drizzle.__drizzle_migrations (hash) VALUES ('good1')")
    before = create_snapshot(pg_url, storage, now=datetime(2026, 4, 1, tzinfo=UTC)).name
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the problematic migration
        conn.execute("INSERT INTO drizzle.__drizzle_migrations (hash) VALUES ('bad2')")
    after = create_snapshot(pg_url, storage, now=datetime(2026, 5, 1, tzinfo=UTC)).name

    ref = _restore_incident(bot, "bad2 broke payments")
    assert _restore_params(bot, ref)["snapshot"] == before  # not the newer one holding bad2
    bot.replan(ref, "alice", snapshot=after)
    plan = "\n".join(s.plan_text for s in bot.get(ref).steps)
    assert f"*{after} is at the same migration as the database now (#2)" in plan


def test_shell_restores_to_a_time(world, pg_url: str) -> None:
    cfg, bot = world
    answers = [
        "payments lost",
        "3",  # production
        "1",  # data corruption
        "1",  # point-in-time restore (recommended)
        "4",  # restore another snapshot, or to a time
        "3",  # the newest before a time (after the two snapshots)
        "2026-02-01 00:00",  # team time zone (UTC here): the January snapshot
        "1",  # request approval
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "--config", str(cfg), "shell", "--as", "alice"],
        input="\n".join(answers) + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "ROLLBOT_TEST_PROD_URL": pg_url},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (incident,) = bot.open_incidents()
    params = _restore_params(bot, incident.ref)
    assert params["snapshot"] == "snapshot-20260110-080000"
    assert params["before"] == "2026-02-01T00:00:00+00:00"
