"""The stuck-migration method in an incident, on a real PostgreSQL.

A session holds a row lock in an open transaction; an ``ALTER TABLE`` waits for
it and a reader queues behind the ALTER (a two-level blocking tree). The
incident pins the root blocker at plan time, is approved by a second person,
terminates it, and the ALTER completes; the holder's uncommitted row is gone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from bot.config import Settings, load_settings
from bot.errors import RollbotError
from bot.executor import Executor, NullSink
from bot.lifecycle import State
from bot.service import Rollbot
from handlers.runtime import register_provider_steps
from providers.postgres.triage import activity
from providers.postgres.triage_step import TerminateBlockerStep
from tests.waiting import DEADLINE_SECONDS, wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ROLLBOT_TRIAGE_TEST_URL", pg_url)
    path = tmp_path / "rollbot.toml"
    path.write_text(
        f"""
database_url = "sqlite:///{tmp_path / "state.db"}"
[approvals]
users = ["alice", "bob"]
[environments.production]
tier = "production"
database_url_env = "ROLLBOT_TRIAGE_TEST_URL"
backups = "{tmp_path / "backups"}"
"""
    )
    return load_settings(path)


@pytest.fixture
def bot(settings: Settings) -> Iterator[Rollbot]:
    register_provider_steps()
    rollbot = Rollbot.open(settings)
    yield rollbot
    rollbot.store.dispose()


@dataclass
class Blocked:
    holder: psycopg.Connection
    holder_pid: int
    threads: list[threading.Thread] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    alter_done: threading.Event = field(default_factory=threading.Event)


def _in_thread(state: Blocked, url: str, sql: str, app: str, done: threading.Event | None) -> None:
    def work() -> None:
        try:
            # No lock_timeout: it would bet on how fast a busy machine gets through the test.
            # The fixture's teardown releases the lock; dropping the database ends the rest.
            with psycopg.connect(url, autocommit=True, application_name=app) as conn:
                conn.execute(sql)
        except BaseException as exc:
            state.errors.append(exc)
        finally:
            if done is not None:
                done.set()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    state.threads.append(thread)


def _wait_blocked(url: str, count: int) -> None:
    wait_until(
        lambda: sum(1 for b in activity(url).backends if b.blocked_by) >= count,
        f"{count} blocked backend(s)",
    )


@pytest.fixture
def blocked(pg_url: str) -> Iterator[Blocked]:
    with psycopg.connect(pg_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        setup.execute("INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 10) g")
    holder = psycopg.connect(pg_url, application_name="app-worker")
    holder.execute("INSERT INTO orders VALUES (11, 'uncommitted')")  # transaction left open
    state = Blocked(holder, holder.info.backend_pid)
    _in_thread(
        state,
        pg_url,
        "ALTER TABLE orders ADD COLUMN shipped_at timestamptz",
        "migrate",
        state.alter_done,
    )
    _wait_blocked(pg_url, 1)
    _in_thread(state, pg_url, "SELECT count(*) FROM orders", "reader", None)
    _wait_blocked(pg_url, 2)
    yield state
    holder.close()
    for thread in state.threads:
        thread.join(timeout=DEADLINE_SECONDS)


def _columns(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders' "
            "ORDER BY ordinal_position"
        ).fetchall()
    return [r[0] for r in rows]


def _triaged(bot: Rollbot) -> str:
    incident = bot.open_incident("alice", "migration 0004 hangs", environment="production")
    bot.answer(incident.ref, "schema_only", "alice")
    assert "stuck_migration" in bot.allowed_methods(bot.get(incident.ref))
    return incident.ref


def test_incident_terminates_the_root_blocker_and_the_alter_completes(
    bot: Rollbot, pg_url: str, blocked: Blocked
) -> None:
    ref = _triaged(bot)
    incident = bot.choose_method(ref, "stuck_migration", "alice")
    (step,) = incident.steps
    assert step.kind == "postgres.terminate_blocker" and step.destructive
    # Pinned at plan time: the root of the tree (the idle holder), not the ALTER it blocks.
    assert step.params["pid"] == blocked.holder_pid
    assert step.params["backend_start"]
    assert f"pg_terminate_backend({blocked.holder_pid})" in step.plan_text
    assert "uncommitted work is rolled back" in step.plan_text
    assert "ALTER TABLE orders" in step.plan_text  # the blocking tree is shown
    bot.request_approval(ref, "alice")
    with pytest.raises(RollbotError, match="cannot approve it in production"):
        bot.approve(ref, "alice")
    bot.approve(ref, "bob")
    bot.start(ref, "alice")
    done = Executor(bot).run_incident(ref, NullSink())
    assert done.state == State.VERIFYING.value, done.steps[0].error
    assert done.steps[0].result["pid"] == blocked.holder_pid
    assert done.steps[0].result["still_blocked"] == []
    assert blocked.alter_done.wait(DEADLINE_SECONDS), "ALTER TABLE still blocked after the step"
    assert blocked.errors == []
    assert _columns(pg_url) == ["id", "note", "shipped_at"]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT max(id), count(*) FROM orders").fetchone() == (10, 10)
    assert blocked.holder_pid not in activity(pg_url).pids


def test_nothing_blocked_is_refused_at_plan_time(bot: Rollbot, pg_url: str) -> None:
    ref = _triaged(bot)
    with pytest.raises(RollbotError, match="no query is blocked"):
        bot.choose_method(ref, "stuck_migration", "alice")
    assert bot.get(ref).state == State.TRIAGED.value


def test_a_reused_pid_is_refused(bot: Rollbot, blocked: Blocked) -> None:
    ref = _triaged(bot)
    incident = bot.get(ref)
    ctx = bot._context(incident, bot.environment_of(incident))
    step = TerminateBlockerStep(pid=blocked.holder_pid, backend_start="2001-01-01T00:00:00+00:00")
    with pytest.raises(RollbotError, match="another session"):
        step.run(ctx)
    assert blocked.holder_pid in activity(ctx.environment.database_url()).pids
    assert not blocked.alter_done.is_set()


def test_blocker_gone_before_the_run_is_a_no_op(bot: Rollbot, blocked: Blocked) -> None:
    ref = _triaged(bot)
    bot.choose_method(ref, "stuck_migration", "alice")
    bot.request_approval(ref, "alice")
    bot.approve(ref, "bob")
    bot.start(ref, "alice")
    blocked.holder.rollback()  # the application gave up by itself
    assert blocked.alter_done.wait(DEADLINE_SECONDS)
    done = Executor(bot).run_incident(ref, NullSink())
    assert done.state == State.VERIFYING.value
    assert "already ended" in done.steps[0].result["summary"]
