"""A restore incident on a drizzle-managed database: verify expects the snapshot's head."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from bot.config import load_settings
from bot.executor import Executor, NullSink
from bot.models import Incident, Step
from bot.service import Rollbot
from bot.steps import StepResult
from handlers.runtime import register_provider_steps
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.postgres.checksums import table_checksums
from providers.postgres.snapshot import create_snapshot
from providers.storage import open_storage
from tests.core_fixtures import started_restore, write_config

EXAMPLE = Path(__file__).resolve().parents[1] / "handlers" / "drill" / "example_migrations"
pytestmark = pytest.mark.postgres


def test_pitr_incident_restores_and_verifies_against_the_snapshot_head(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("reverse"))
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    cfg.write_text(
        cfg.read_text().replace(
            "[environments.production]\n",
            f'[environments.production]\nmigrations_dir = "{folder}"\n',
        )
    )
    monkeypatch.setenv("ROLLBOT_TEST_PROD_URL", pg_url)
    settings = load_settings(cfg)
    journal = read_journal(folder)
    good, bad = journal.entries[-2], journal.entries[-1]

    apply_migrations(pg_url, journal, upto=good.idx)
    with psycopg.connect(pg_url) as conn:
        before = table_checksums(conn)
    create_snapshot(pg_url, open_storage(settings.environment("production").backups))
    apply_migrations(pg_url, journal)  # the problematic migration

    register_provider_steps()
    bot = Rollbot.open(settings)
    incident = bot.open_incident("alice", f"{bad.tag} corrupted data", environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    bot.choose_method(incident.id, "pitr", "alice")
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    done = Executor(bot).run_incident(incident.id)

    assert done.state == "verifying", [(s.kind, s.error) for s in done.steps]
    verify = done.steps[-1].result or {}
    assert verify["head"] == good.tag
    assert any(f"head matches the expected {good.tag}" in line for line in verify["lines"])
    with psycopg.connect(pg_url) as conn:
        assert table_checksums(conn) == before


class _TamperAfterRestore(NullSink):
    """Alters one row between the restore step and the verify step."""

    def __init__(self, url: str) -> None:
        self.url = url

    def step_finished(self, incident: Incident, step: Step, result: StepResult) -> None:
        if step.kind == "postgres.restore":
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("UPDATE ledger SET amount = amount + 1 WHERE id = 77")


def _ledger_incident(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("ROLLBOT_TEST_PROD_URL", pg_url)
    settings = load_settings(cfg)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id serial PRIMARY KEY, amount int NOT NULL)")
        conn.execute("INSERT INTO ledger (amount) SELECT g FROM generate_series(1, 400) g")
        conn.execute("CREATE FUNCTION total() RETURNS bigint LANGUAGE sql AS 'SELECT 1'")
    create_snapshot(pg_url, open_storage(settings.environment("production").backups))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM ledger WHERE id > 300")
    register_provider_steps()
    bot = Rollbot.open(settings)
    return bot, started_restore(bot, "ledger rows lost")


def test_deep_verify_reports_what_it_checked(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot, incident_id = _ledger_incident(tmp_path, pg_url, monkeypatch)
    done = Executor(bot).run_incident(incident_id)
    assert done.state == "verifying", [(s.kind, s.error) for s in done.steps]
    lines = "\n".join(done.steps[-1].result["lines"])
    assert "deep verify: OK" in lines
    assert "public.ledger" in lines or "1 table" in lines
    assert "sequence" in lines and "function" in lines and "database ACL" in lines


def test_deep_verify_fails_on_a_row_altered_after_the_restore(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot, incident_id = _ledger_incident(tmp_path, pg_url, monkeypatch)
    done = Executor(bot).run_incident(incident_id, _TamperAfterRestore(pg_url))
    assert done.state == "failed"
    verify = done.steps[-1]
    assert verify.kind == "postgres.verify" and verify.status == "failed"
    assert "public.ledger" in (verify.error or ""), verify.error
    assert "deep verify: PROBLEMS FOUND" in "\n".join(verify.result["lines"])
