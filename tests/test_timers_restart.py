"""Real ``rollbot timers run`` processes, SIGKILLed: a timer due while every sweeper was down
fires once after a restart (SQLite and PostgreSQL), and with two sweepers on one PostgreSQL
each timer fires once, the survivor firing what the killed one left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.config import load_settings
from bot.models import OutboxItem, Timer, utcnow
from bot.service import Rollbot
from bot.timers import schedule
from handlers.runtime import register_provider_steps
from tests.core_fixtures import write_config
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]


class Sweepers:
    """The ``rollbot timers run`` processes a test started (each ended after it)."""

    def __init__(self, cfg: Path) -> None:
        self.cfg = cfg
        self.procs: list[subprocess.Popen[str]] = []

    def start(self) -> subprocess.Popen[str]:
        (proc,) = self.start_many(1)
        return proc

    def start_many(self, count: int) -> list[subprocess.Popen[str]]:
        """Start ``count`` at once (each takes seconds to import), then wait until each
        says it sweeps."""
        procs = [self._spawn() for _ in range(count)]
        for proc in procs:
            line = proc.stdout.readline()  # type: ignore[union-attr]  (EOF if it died)
            assert "sweeping every" in line, self.log(proc)
        return procs

    def _spawn(self) -> subprocess.Popen[str]:
        err = (self.cfg.parent / f"timers-{len(self.procs)}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "handlers.cli", "--config", str(self.cfg), "timers", "run"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        err.close()
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[str]) -> str:
        return (self.cfg.parent / f"timers-{self.procs.index(proc)}.log").read_text()

    def kill(self, proc: subprocess.Popen[str]) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            proc.stdout.close()  # type: ignore[union-attr]


@pytest.fixture
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """PostgreSQL unless a test asks for SQLite (``indirect`` parametrization)."""
    if getattr(request, "param", "postgres") == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def setup(
    tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Rollbot, Sweepers]]:
    """A real-time Rollbot on the state store and the sweepers' config (0.2 s sweeps)."""
    if not state_url.startswith("sqlite"):
        monkeypatch.setenv("ROLLBOT_DATABASE_URL", state_url)  # never in the file
    cfg = write_config(tmp_path, state_url)
    cfg.write_text(cfg.read_text() + "\n[reminders]\ntimer_sweep_seconds = 0.2\n")
    register_provider_steps()
    bot = Rollbot.open(load_settings(cfg))
    sweepers = Sweepers(cfg)
    yield bot, sweepers
    sweepers.close()
    bot.store.dispose()


def waiting_incident(bot: Rollbot, description: str) -> int:
    incident = bot.open_incident("alice", description, environment="production")
    bot.answer(incident.id, "app_broken", "alice")
    bot.choose_method(incident.id, "app_rollback", "alice")
    bot.request_approval(incident.id, "alice")
    return incident.id


def remind_soon(bot: Rollbot, incident_id: int, seconds: float) -> int:
    """Its approval reminder, due in ``seconds`` (as if it had waited 15 minutes then)."""
    due = utcnow() + timedelta(seconds=seconds)
    payload = {
        "plan_hash": bot.get(incident_id).plan_hash,
        "since": (due - timedelta(minutes=15)).isoformat(),
    }
    with bot.store.session() as session:
        timer = schedule(
            session, "approval_reminder", due, incident_id=incident_id, payload=payload
        )
        return timer.id


def timer(bot: Rollbot, timer_id: int) -> Timer:
    with bot.store.read() as session:
        row = session.get(Timer, timer_id)
        assert row is not None
        return row


def devops_reminders(bot: Rollbot, incident_id: int) -> list[str]:
    with bot.store.read() as session:
        rows = session.scalars(
            select(OutboxItem).where(
                OutboxItem.incident_id == incident_id, OutboxItem.audience == "devops"
            )
        )
        return [r.notice["summary"] for r in rows if "still waits" in r.notice["summary"]]


def fired(bot: Rollbot, timer_id: int, proc: subprocess.Popen[str], sweepers: Sweepers) -> bool:
    assert proc.poll() is None, sweepers.log(proc)
    return timer(bot, timer_id).state == "fired"


@pytest.mark.parametrize("state_url", ["sqlite", "postgres"], indirect=True)
def test_a_timer_due_while_the_sweeper_was_killed_fires_once_after_a_restart(
    setup: tuple[Rollbot, Sweepers],
) -> None:
    bot, sweepers = setup
    incident_id = waiting_incident(bot, "orders corrupted")
    first = sweepers.start()
    timer_id = remind_soon(bot, incident_id, seconds=2)
    sweepers.kill(first)
    due = timer(bot, timer_id).due_at
    wait_until(lambda: utcnow() > due + timedelta(seconds=1), "the timer to be due")
    assert timer(bot, timer_id).state == "pending"  # nobody was there to fire it

    second = sweepers.start()
    wait_until(lambda: fired(bot, timer_id, second, sweepers), "the restarted sweeper to fire it")
    assert f":{second.pid}:" in (timer(bot, timer_id).fired_by or "")
    (said,) = devops_reminders(bot, incident_id)  # whatever the hour adds to it
    assert said.startswith(f"INC-{incident_id} still waits for approval after 15 min")
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0, sweepers.log(second)
    assert len(devops_reminders(bot, incident_id)) == 1  # not fired again on the way out


def test_two_sweepers_on_postgresql_fire_each_timer_once_and_the_survivor_takes_over(
    setup: tuple[Rollbot, Sweepers],
) -> None:
    bot, sweepers = setup
    assert bot.store.dialect == "postgresql"
    incidents = [waiting_incident(bot, f"incident {n}") for n in range(4)]
    one, two = sweepers.start_many(2)
    with bot.store.read() as session:  # both made sure of the cron reminders: one each
        kinds = [t.kind for t in session.scalars(select(Timer).where(Timer.state == "pending"))]
    assert kinds.count("drill_reminder") == 1 and kinds.count("runbook_review_reminder") == 1

    racing = [remind_soon(bot, i, seconds=1) for i in incidents[:3]]
    for timer_id in racing:
        wait_until(lambda t=timer_id: fired(bot, t, two, sweepers), "both sweepers to fire them")
    assert [len(devops_reminders(bot, i)) for i in incidents[:3]] == [1, 1, 1]

    left = remind_soon(bot, incidents[3], seconds=2)
    sweepers.kill(one)
    wait_until(lambda: fired(bot, left, two, sweepers), "the survivor to fire it")
    assert f":{two.pid}:" in (timer(bot, left).fired_by or "")
    assert [len(devops_reminders(bot, i)) for i in incidents] == [1, 1, 1, 1]
