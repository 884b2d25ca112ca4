"""The forward-fix method in an incident, end to end on a real PostgreSQL.

A copy of a real drizzle sample (vercel ai-chatbot up to ``0007``, which adds
``Chat.lastContext``) is applied; the incident reviews the drafted reverse,
is approved, writes it as ``0008_revert_...`` and applies it with the built-in
applier (no migrate command configured), then verifies.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from bot.config import load_settings
from bot.errors import RollbotError
from bot.executor import Executor, NullSink
from bot.lifecycle import State
from bot.service import Rollbot
from handlers.runtime import register_provider_steps
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal

pytestmark = pytest.mark.postgres

SAMPLE = (
    Path(__file__).resolve().parents[2] / "shared" / "samples" / "drizzle" / "vercel__ai-chatbot"
)
if not SAMPLE.is_dir():
    SAMPLE = Path("/work/shared/samples/drizzle/vercel__ai-chatbot")
KEEP = 8  # entries 0000..0007; 0007 adds "Chat"."lastContext"


def sample_upto(dest: Path, keep: int) -> Path:
    """A copy of the sample whose journal ends at entry ``keep - 1``."""
    shutil.copytree(SAMPLE, dest)
    journal_path = dest / "meta" / "_journal.json"
    data = json.loads(journal_path.read_text())
    for extra in data["entries"][keep:]:
        (dest / f"{extra['tag']}.sql").unlink()
        (dest / "meta" / f"{extra['tag'][:4]}_snapshot.json").unlink(missing_ok=True)
    data["entries"] = data["entries"][:keep]
    journal_path.write_text(json.dumps(data, indent=2))
    return dest


def write_config(tmp_path: Path, migrations: Path, commands: str = "") -> Path:
    path = tmp_path / "rollbot.toml"
    path.write_text(
        f"""
database_url = "sqlite:///{tmp_path / "state.db"}"

[approvals]
users = ["alice", "bob"]

[environments.staging]
tier = "staging"
database_url_env = "ROLLBOT_FF_URL"
migrations_dir = "{migrations}"
backups = "{tmp_path / "backups"}"

[environments.staging.commands]
workdir = "{tmp_path}"
timeout_seconds = 60
{commands}

[environments.production]
tier = "production"
database_url_env = "ROLLBOT_FF_URL"
migrations_dir = "{migrations}"
backups = "{tmp_path / "backups"}"
"""
    )
    return path


def column_exists(url: str, table: str, column: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
            (table, column),
        ).fetchone()
    return row is not None


@pytest.fixture
def migrations(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = sample_upto(tmp_path / "migrations", KEEP)
    apply_migrations(pg_url, read_journal(folder))
    assert column_exists(pg_url, "Chat", "lastContext")
    monkeypatch.setenv("ROLLBOT_FF_URL", pg_url)
    return folder


@contextmanager
def open_bot(config: Path) -> Iterator[Rollbot]:
    register_provider_steps()
    bot = Rollbot.open(load_settings(config))
    try:
        yield bot
    finally:
        bot.store.dispose()


class RecordingSink(NullSink):
    """Keeps what the steps reported (what the Slack thread would show)."""

    def __init__(self) -> None:
        self.progress: list[str] = []

    def step_progress(self, incident: object, step: object, text: str) -> None:
        self.progress.append(text)


def run_forward_fix(bot: Rollbot, environment: str, answers: tuple[str, ...] = ()) -> int:
    incident = bot.open_incident("alice", "Chat.lastContext breaks old code", environment)
    for answer in answers:
        incident = bot.answer(incident.id, answer, "alice")
    assert incident.state == State.TRIAGED
    incident = bot.choose_method(incident.id, "forward_fix", "alice")
    bot.request_approval(incident.id, "alice")
    assert bot.approve(incident.id, "bob").satisfied
    bot.start(incident.id, "alice")
    return incident.id


@pytest.mark.parametrize(
    ("environment", "answers"), [("staging", ()), ("production", ("schema_only",))]
)
def test_forward_fix_incident_reverts_the_newest_migration(
    tmp_path: Path, migrations: Path, pg_url: str, environment: str, answers: tuple[str, ...]
) -> None:
    with open_bot(write_config(tmp_path, migrations)) as bot:
        incident = bot.open_incident("alice", "lastContext breaks old code", environment)
        for answer in answers:
            incident = bot.answer(incident.id, answer, "alice")
        incident = bot.choose_method(incident.id, "forward_fix", "alice")
        kinds = [s.kind for s in incident.steps]
        assert kinds == [
            "drizzle.review_reverse",
            "postgres.snapshot",
            "drizzle.apply",
            "postgres.verify",
        ]
        review = incident.steps[0].plan_text
        assert "0007_flowery_ben_parker.sql" in review
        assert 'ALTER TABLE "Chat" ADD COLUMN "lastContext" jsonb' in review
        assert 'DROP COLUMN "lastContext"' in review
        # Nothing is written before approval.
        assert len(read_journal(migrations).entries) == KEEP

        bot.request_approval(incident.id, "alice")
        assert bot.approve(incident.id, "bob").satisfied
        bot.start(incident.id, "alice")
        sink = RecordingSink()
        done = Executor(bot).run_incident(incident.id, sink)
        assert done.state == State.VERIFYING, [(s.kind, s.error) for s in done.steps]
        assert not column_exists(pg_url, "Chat", "lastContext")
        journal = read_journal(migrations)
        assert journal.newest is not None
        assert journal.newest.tag == "0008_revert_0007_flowery_ben_parker"
        result = done.steps[0].result
        assert result["commit_message"].startswith("revert: rollback migration 0007 - ")
        assert done.steps[2].result["applied"] == ["0008_revert_0007_flowery_ben_parker"]
        assert any('DROP COLUMN "lastContext"' in text for text in sink.progress)
        log = (migrations / "audit.log").read_text().splitlines()
        assert log[0].endswith("Migration started: 0008_revert_0007_flowery_ben_parker")
        assert "Migration finished: 0008_revert_0007_flowery_ben_parker (" in log[1]


def test_failing_integration_tests_fail_the_incident_with_exit_code_and_tail(
    tmp_path: Path, migrations: Path, pg_url: str
) -> None:
    commands = 'integration_tests = "echo running integration tests; echo 2 failed >&2; exit 7"'
    with open_bot(write_config(tmp_path, migrations, commands)) as bot:
        incident_id = run_forward_fix(bot, "staging")
        done = Executor(bot).run_incident(incident_id)
        assert done.state == State.FAILED
        steps = {s.kind + ":" + str(s.params.get("command", "")): s for s in done.steps}
        failed = steps["command:integration_tests"]
        assert failed.status == "failed"
        assert failed.result["exit_code"] == 7
        assert failed.result["tail"] == ["running integration tests", "2 failed"]
        assert "exited 7" in (failed.error or "")
        assert steps["postgres.verify:"].status == "cancelled"
        # The reverse itself was applied before the tests ran.
        assert not column_exists(pg_url, "Chat", "lastContext")


def test_incomplete_draft_stops_before_migrating(
    tmp_path: Path, migrations: Path, pg_url: str
) -> None:
    backfill = migrations / "0008_backfill.sql"
    backfill.write_text('UPDATE "Chat" SET "lastContext" = \'{}\'::jsonb;\n')
    journal_path = migrations / "meta" / "_journal.json"
    data = json.loads(journal_path.read_text())
    data["entries"].append(
        {
            **data["entries"][-1],
            "idx": 8,
            "tag": "0008_backfill",
            "when": data["entries"][-1]["when"] + 1,
        }
    )
    journal_path.write_text(json.dumps(data))
    apply_migrations(pg_url, read_journal(migrations))
    with open_bot(write_config(tmp_path, migrations)) as bot:
        incident_id = run_forward_fix(bot, "staging")
        plan = bot.get(incident_id).steps[0].plan_text
        assert "NEEDS A PERSON: 0008_backfill.sql statement 1" in plan
        done = Executor(bot).run_incident(incident_id)
        assert done.state == State.FAILED
        assert "need a person" in (done.steps[0].error or "")
        assert done.steps[1].status == "cancelled"


def test_forward_fix_without_a_migrations_folder_is_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    monkeypatch.setenv("ROLLBOT_FF_URL", pg_url)
    config = write_config(tmp_path, tmp_path / "unused")
    config.write_text(config.read_text().replace(f'migrations_dir = "{tmp_path / "unused"}"\n', ""))
    with open_bot(config) as bot:
        incident = bot.open_incident("alice", "x", "staging")
        with pytest.raises(RollbotError, match="no migrations_dir configured"):
            bot.choose_method(incident.id, "forward_fix", "alice")
        assert bot.get(incident.id).state == State.TRIAGED
