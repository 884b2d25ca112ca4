"""Undo a restore (its own approved, audited incident) and retention of kept databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from bot.audit import timeline
from bot.config import load_settings
from bot.executor import Executor
from bot.service import Rollbot
from handlers.cli import main
from handlers.runtime import register_provider_steps
from providers.postgres.kept import drop_kept, kept_databases, plan_kept_retention, swap_back
from providers.postgres.snapshot import create_snapshot
from providers.storage import open_storage
from tests.core_fixtures import started_restore, write_config

pytestmark = pytest.mark.postgres


def _amounts(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT sum(amount) FROM ledger").fetchone()
        assert row is not None
        return int(row[0])


def _restored(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """Production restored by INC-1; the state before it is a kept database."""
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("ROLLBOT_TEST_PROD_URL", pg_url)
    settings = load_settings(cfg)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE ledger AS SELECT g AS id, 1 AS amount FROM generate_series(1, 50) g"
        )
    create_snapshot(pg_url, open_storage(settings.environment("production").backups))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE ledger SET amount = 2")  # 100: what someone wants back after all
    register_provider_steps()
    bot = Rollbot.open(settings)
    incident_id = started_restore(bot, "ledger doubled")
    assert Executor(bot).run_incident(incident_id).state == "verifying"
    assert _amounts(pg_url) == 50
    return cfg, bot, bot.get(incident_id)


def test_undo_is_its_own_approved_audited_incident(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, bot, first = _restored(tmp_path, pg_url, monkeypatch)
    (kept,) = kept_databases(pg_url)

    def cli(*args: str) -> int:
        return main(["--config", str(cfg), *args])

    assert cli("restore", "undo", first.ref, "--as", "mallory") == 2
    assert "mallory may not undo a restore" in capsys.readouterr().err
    assert cli("restore", "undo", first.ref, "--as", "alice") == 0
    out = capsys.readouterr().out
    assert "INC-2 opened to undo the restore of INC-1" in out and kept.name in out
    assert cli("run", "INC-2", "--as", "alice") == 2  # not approved: nothing runs
    capsys.readouterr()
    assert _amounts(pg_url) == 50
    assert cli("request-approval", "INC-2", "--as", "alice") == 0
    assert cli("approve", "INC-2", "--as", "alice") == 2  # production: someone else
    assert cli("approve", "INC-2", "--as", "bob") == 0
    assert cli("run", "INC-2", "--as", "alice") == 0
    capsys.readouterr()

    assert _amounts(pg_url) == 100  # the state before the restore is back
    undo = bot.get("INC-2")
    assert undo.state == "verifying" and undo.follows_id == first.id
    replaced = undo.steps[0].result["kept_database"]
    assert replaced in {k.name for k in kept_databases(pg_url)}  # the undo is undoable too
    assert kept.name not in {k.name for k in kept_databases(pg_url)}
    with bot.store.session() as s:
        undo_events = [e.message for e in timeline(s, undo.id)]
        first_events = [e.message for e in timeline(s, first.id)]
    assert any("approved by bob" in m for m in undo_events)
    assert any("Undo finished" in m for m in undo_events)
    assert any("INC-2 opened to undo this restore" in m for m in first_events)


def test_undo_needs_a_finished_restore(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("ROLLBOT_TEST_PROD_URL", pg_url)
    bot = Rollbot.open(load_settings(cfg))
    incident = bot.open_incident("alice", "nothing restored", environment="production")
    assert main(["--config", str(cfg), "restore", "undo", incident.ref, "--as", "alice"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rollbot: {incident.ref} has no finished restore that kept a database"] or (
        len(err) == 1 and "no finished restore" in err[0]
    )


def test_undo_in_the_second_its_database_was_kept_keeps_the_current_state_a_second_later(
    pg_cluster, new_database
) -> None:
    url = new_database("sameapp")
    at = datetime(2026, 12, 1, 3, 0, 0, tzinfo=UTC)
    kept = "sameapp_before_restore_20261201_030000"
    taken = "sameapp_before_restore_20261201_030001"  # another keep the second after
    for name in (kept, taken):
        pg_cluster.create_database(name)  # dropped with the databases named after sameapp
    replaced = swap_back(url, kept, now=at.replace(microsecond=500))
    assert replaced == "sameapp_before_restore_20261201_030002"
    assert sorted(k.name for k in kept_databases(url)) == [taken, replaced]


def test_retention_drops_old_kept_databases_never_the_newest(pg_cluster, new_database) -> None:
    url = new_database("keptapp")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    names = []
    for days in (40, 20, 3, 1):
        stamp = (now - timedelta(days=days)).strftime("%Y%m%d_%H%M%S")
        names.append(f"keptapp_before_restore_{stamp}")
        pg_cluster.create_database(names[-1])
    try:
        plan = plan_kept_retention(url, keep_last=1, keep_days=7, now=now)
        assert [k.name for k in plan.drop] == [names[1], names[0]]
        assert "drop kept database " + names[0] in "\n".join(plan.lines())
        assert [k.name for k in plan_kept_retention(url, 0, None, now).keep] == [names[3]]
        drop_kept(url, plan)
        assert [k.name for k in kept_databases(url)] == [names[3], names[2]]
    finally:
        for name in names:
            pg_cluster.drop_database(name)


def test_snapshot_prune_drops_old_kept_databases_with_a_plan_first(
    tmp_path: Path,
    pg_url: str,
    pg_cluster,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    cfg.write_text(
        cfg.read_text() + "\n[environments.production.retention]\nkeep_last = 1\nkeep_days = 7\n"
    )
    monkeypatch.setenv("ROLLBOT_TEST_PROD_URL", pg_url)
    db = pg_url.rsplit("/", 1)[1]
    now = datetime.now(UTC)
    names = [
        f"{db}_before_restore_{(now - timedelta(days=d)).strftime('%Y%m%d_%H%M%S')}"
        for d in (30, 10, 2)
    ]
    for name in names:
        pg_cluster.create_database(name)
    try:
        args = ["--config", str(cfg), "snapshot", "--env", "production", "--prune"]
        assert main([*args, "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert f"would drop kept database {names[0]}" in out and names[2] not in out
        assert {k.name for k in kept_databases(pg_url)} == set(names)
        assert main(args) == 0
        assert f"dropping kept database {names[1]}" in capsys.readouterr().out
        assert [k.name for k in kept_databases(pg_url)] == [names[2]]
    finally:
        for name in names:
            pg_cluster.drop_database(name)
