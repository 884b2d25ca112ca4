"""Durable timers: a wait for approval is reminded, then paged; a stale or superseded timer
does nothing; a late one still fires, once; racing sweeps fire each timer once; cron
reminders schedule their next occurrence."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.config import ApprovalsConfig, Settings, SlackConfig, load_settings
from bot.errors import ConfigError
from bot.executor import Executor
from bot.models import AuditEvent, OutboxItem, Timer
from bot.notify import Notice
from bot.outbox import Deliverer
from bot.service import Rollbot
from bot.timers import late_note, schedule, sweep
from handlers.runtime import register_provider_steps
from handlers.timers import ensure_cron_reminders
from tests.core_fixtures import Clock
from tests.fake_provider import write_fake_config

TUESDAY_10AM = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # in business hours


@pytest.fixture(autouse=True)
def routing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "R0ONCALLKEY00000000000000000000")
    monkeypatch.setenv("PAGERDUTY_CTO_ROUTING_KEY", "R0CTOKEY0000000000000000000000")


@pytest.fixture
def admin_bot(settings: Settings, clock: Clock) -> Iterator[Rollbot]:
    register_provider_steps()
    with_admin = settings.model_copy(update={"slack": SlackConfig(database_admin="S0DBA")})
    rollbot = Rollbot.open(with_admin, clock=clock)
    yield rollbot
    rollbot.store.dispose()


def awaiting_approval(bot: Rollbot, description: str = "orders corrupted") -> int:
    incident = bot.open_incident("alice", description, environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    bot.choose_method(incident.id, "pitr", "alice")
    bot.request_approval(incident.id, "alice")
    return incident.id


def notices(bot: Rollbot, incident_id: int | None = None) -> list[OutboxItem]:
    with bot.store.read() as session:
        stmt = select(OutboxItem).order_by(OutboxItem.id)
        if incident_id is not None:
            stmt = stmt.where(OutboxItem.incident_id == incident_id)
        return list(session.scalars(stmt))


def reminders(bot: Rollbot, audience: str = "devops") -> list[OutboxItem]:
    """The notices timers sent about a wait for approval (to devops, by default)."""
    return [
        n
        for n in notices(bot)
        if "still waits for approval" in n.notice["summary"] and n.audience == audience
    ]


def timers(bot: Rollbot, kind: str | None = None) -> list[Timer]:
    with bot.store.read() as session:
        stmt = select(Timer).order_by(Timer.id)
        if kind is not None:
            stmt = stmt.where(Timer.kind == kind)
        return list(session.scalars(stmt))


def test_a_wait_for_approval_is_reminded_then_paged_even_in_business_hours(
    admin_bot: Rollbot, clock: Clock
) -> None:
    bot = admin_bot
    clock.now = TUESDAY_10AM
    incident_id = awaiting_approval(bot)
    before = len(notices(bot))
    clock.advance(minutes=14)
    assert sweep(bot) == 0
    clock.advance(minutes=1)
    assert sweep(bot) == 1
    reminded = notices(bot)[before:]
    assert [(n.kind, n.audience) for n in reminded] == [("approval_waiting", "devops")]
    assert (
        reminded[0].notice["summary"] == f"INC-{incident_id} still waits for approval after 15 min"
    )
    assert reminded[0].notice["mention"] == "S0DBA"  # the admin, in business hours

    clock.advance(minutes=14)
    assert sweep(bot) == 0
    clock.advance(minutes=1)
    assert sweep(bot) == 1
    paged = notices(bot)[before + 1 :]
    assert [(n.kind, n.audience) for n in paged] == [
        ("approval_waiting", "devops"),
        ("approval_waiting", "oncall"),  # paged although it is business hours
    ]
    assert "after 30 min: paging on-call" in paged[1].notice["summary"]
    clock.advance(hours=5)
    assert sweep(bot) == 0  # nothing more: each fired once
    assert [(t.kind, t.state) for t in timers(bot)] == [
        ("approval_reminder", "fired"),
        ("approval_page", "fired"),
    ]
    assert timers(bot)[1].outcome == "paged oncall"


def test_an_approval_given_before_the_reminder_makes_it_do_nothing(
    bot: Rollbot, clock: Clock
) -> None:
    incident_id = awaiting_approval(bot)
    clock.advance(minutes=5)
    bot.approve(incident_id, "bob")
    clock.advance(minutes=10)
    assert sweep(bot) == 0
    clock.advance(minutes=30)
    assert sweep(bot) == 0  # and no page was set
    assert reminders(bot) == []
    (reminder,) = timers(bot)
    assert reminder.state == "skipped"
    assert reminder.outcome == f"INC-{incident_id} is approved (1/1)"


def test_a_cancelled_incident_is_not_reminded(bot: Rollbot, clock: Clock) -> None:
    incident_id = awaiting_approval(bot)
    bot.cancel(incident_id, "alice", "false alarm")
    clock.advance(minutes=15)
    assert sweep(bot) == 0
    assert reminders(bot) == []
    assert timers(bot)[0].outcome == f"INC-{incident_id} is cancelled now"


def test_a_re_plan_supersedes_the_reminder(bot: Rollbot, clock: Clock) -> None:
    incident_id = awaiting_approval(bot)
    old_hash = bot.get(incident_id).plan_hash
    clock.advance(minutes=5)
    bot.choose_method(incident_id, "pitr", "alice", {"expect": "0001_good"})  # a new plan
    bot.request_approval(incident_id, "alice")
    assert bot.get(incident_id).plan_hash != old_hash
    first, second = timers(bot, "approval_reminder")
    assert (first.state, first.outcome) == ("superseded", "superseded by a newer timer")
    assert second.payload["plan_hash"] == bot.get(incident_id).plan_hash

    clock.advance(minutes=10)  # the old reminder's time
    assert sweep(bot) == 0
    clock.advance(minutes=5)  # fifteen minutes into the new wait
    assert sweep(bot) == 1
    assert [n.notice["summary"] for n in reminders(bot)] == [
        f"INC-{incident_id} still waits for approval after 15 min"
    ]


def test_an_older_pending_timer_or_one_for_an_old_plan_does_nothing(
    bot: Rollbot, clock: Clock
) -> None:
    incident_id = awaiting_approval(bot)
    now = clock()
    with bot.store.session() as session:  # two pending rows for one (incident, kind)
        session.add(
            Timer(
                kind="approval_reminder",
                incident_id=incident_id,
                due_at=now,
                payload={"plan_hash": bot.get(incident_id).plan_hash, "since": now.isoformat()},
                state="pending",
                created_at=now,
            )
        )
    clock.advance(minutes=15)
    assert sweep(bot) == 1  # the newest; the older one is superseded when found
    assert [t.state for t in timers(bot, "approval_reminder")] == ["superseded", "fired"]
    assert len(reminders(bot)) == 1

    with bot.store.session() as session:
        payload = {"plan_hash": "an-old-plan", "since": now.isoformat()}
        schedule(session, "approval_page", clock(), incident_id=incident_id, payload=payload)
    assert sweep(bot) == 0
    stale = timers(bot, "approval_page")[-1]
    assert stale.state == "skipped" and "re-planned" in (stale.outcome or "")


def test_a_late_timer_still_fires_once_and_says_how_late(bot: Rollbot, clock: Clock) -> None:
    incident_id = awaiting_approval(bot)
    clock.advance(hours=6)  # every rollbot process was down meanwhile
    assert sweep(bot) == 1  # the reminder
    assert sweep(bot) == 1  # the page it set, already due
    assert sweep(bot) == 0
    summaries = [n.notice["summary"] for n in reminders(bot)]
    assert summaries == [
        f"INC-{incident_id} still waits for approval after 360 min (fired 5 h 45 min late)",
        f"INC-{incident_id} still waits for approval after 360 min: paging on-call "
        "(fired 5 h 30 min late)",
    ]
    reminder = timers(bot, "approval_reminder")[0]
    assert reminder.outcome is not None and reminder.outcome.endswith("(fired 5 h 45 min late)")
    assert late_note(reminder, reminder.due_at + timedelta(minutes=1)) == ""


def test_sweeps_racing_in_two_processes_fire_each_timer_once(
    bot: Rollbot, settings: Settings, clock: Clock
) -> None:
    ids = [awaiting_approval(bot, f"incident {n}") for n in range(4)]
    clock.advance(minutes=15)
    other = Rollbot.open(settings, clock=clock)  # a second process on the same SQLite file
    start = threading.Barrier(4)
    fired: list[int] = []

    def race(rollbot: Rollbot) -> None:
        start.wait()
        fired.append(sweep(rollbot))

    threads = [threading.Thread(target=race, args=(b,)) for b in (bot, other, bot, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    other.store.dispose()
    assert sum(fired) == len(ids)
    assert sorted(n.incident_id for n in reminders(bot)) == ids  # one notice each
    assert [t.state for t in timers(bot, "approval_reminder")] == ["fired"] * len(ids)
    assert len(timers(bot, "approval_page")) == len(ids)  # and one page timer each


def test_a_resolution_sets_a_post_mortem_reminder_for_devops_only(
    bot: Rollbot, clock: Clock
) -> None:
    incident_id = awaiting_approval(bot)
    bot.approve(incident_id, "bob")
    bot.start(incident_id, "alice")
    assert Executor(bot).run_incident(incident_id).state == "verifying"
    bot.resolve(incident_id, "alice", confirm_unticked=True)
    before = len(notices(bot, incident_id))
    clock.advance(days=3)
    assert sweep(bot) == 1
    (reminder,) = notices(bot, incident_id)[before:]
    assert (reminder.kind, reminder.audience) == ("reminder", "devops")
    assert reminder.notice["summary"] == (
        f"INC-{incident_id} was resolved 3 days ago: time for its post-mortem "
        "(no root cause recorded yet)"
    )


def test_cron_reminders_schedule_their_next_occurrence(bot: Rollbot, clock: Clock) -> None:
    made = ensure_cron_reminders(bot)
    assert sorted((t.kind, t.due_at) for t in made) == [
        ("drill_reminder", datetime(2027, 1, 1, 10, 0, tzinfo=UTC)),
        ("runbook_review_reminder", datetime(2027, 1, 15, 10, 0, tzinfo=UTC)),
    ]
    assert ensure_cron_reminders(bot) == []  # already pending: nothing more

    clock.now = datetime(2027, 1, 1, 10, 0, 30, tzinfo=UTC)
    assert sweep(bot) == 1
    assert pending_due(bot) == {
        "drill_reminder": datetime(2027, 4, 1, 10, 0, tzinfo=UTC),
        "runbook_review_reminder": datetime(2027, 1, 15, 10, 0, tzinfo=UTC),
    }
    clock.now = datetime(2027, 8, 1, 12, 0, tzinfo=UTC)  # down for months: each fires once
    assert sweep(bot) == 2
    assert sweep(bot) == 0
    assert pending_due(bot) == {
        "drill_reminder": datetime(2027, 10, 1, 10, 0, tzinfo=UTC),
        "runbook_review_reminder": datetime(2027, 10, 15, 10, 0, tzinfo=UTC),
    }
    with bot.store.read() as session:
        said = list(
            session.scalars(
                select(AuditEvent.message)
                .where(AuditEvent.kind == "reminder", AuditEvent.incident_id.is_(None))
                .order_by(AuditEvent.id)
            )
        )
    assert said[0] == "Reminder: the quarterly restore drill is due (rollbot drill)"
    assert sorted(said[1:]) == [
        "Reminder: the quarterly restore drill is due (rollbot drill) (fired 122 days 2 h late)",
        "Reminder: the runbook review is due (fired 198 days 2 h late)",
    ]
    # Each is a notice for the devops channel, of no incident, delivered like any other.
    team = [n for n in notices(bot) if n.incident_id is None]
    assert [(n.audience, n.kind) for n in team] == [("devops", "reminder")] * 3
    assert sorted(n.notice["summary"] for n in team) == sorted(said)
    posted: list[str] = []

    class Devops:
        audiences = ("devops",)

        def deliver(self, notice: Notice) -> None:
            assert notice.link is None and notice.incident_id is None
            posted.append(notice.summary)

    # January's was never delivered and is months old: given up, not posted in August.
    assert Deliverer(bot.store, [Devops()], clock).deliver_due() == 2
    assert sorted(posted) == sorted(said[1:])


def pending_due(bot: Rollbot) -> dict[str, datetime]:
    return {t.kind: t.due_at for t in timers(bot) if t.state == "pending"}


def test_a_changed_cron_line_replaces_the_pending_reminder(
    bot: Rollbot, settings: Settings
) -> None:
    ensure_cron_reminders(bot)
    reminders_config = settings.reminders.model_copy(update={"drill_cron": "0 9 * * mon"})
    changed = Rollbot(
        settings.model_copy(update={"reminders": reminders_config}), bot.store, clock=bot.clock
    )
    (made,) = ensure_cron_reminders(changed)
    assert made.due_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # the next Monday
    assert [t.state for t in timers(bot, "drill_reminder")] == ["superseded", "pending"]


def test_timer_settings_are_checked_in_one_pass(tmp_path: Path) -> None:
    path = write_fake_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    text = path.read_text().replace(
        "[approvals]\n", "[approvals]\nremind_after_minutes = 20\npage_after_minutes = 20\n"
    )
    path.write_text(text + '\n[reminders]\ndrill_cron = "0 10 1 13 *"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    problems = "\n".join(caught.value.problems)
    assert "approvals.page_after_minutes: must be more than remind_after_minutes (20)" in problems
    assert "reminders.drill_cron: '0 10 1 13 *' is not a crontab line" in problems
    assert ApprovalsConfig().page_after_minutes == 30


def test_timers_list_shows_the_pending_ones(
    bot: Rollbot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from handlers.cli import main

    incident_id = awaiting_approval(bot)
    cfg = str(tmp_path / "rollbot.toml")  # the settings fixture's file
    assert main(["--config", cfg, "timers", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["timers"]
    assert [(t["kind"], t["incident"]) for t in listed] == [
        ("approval_reminder", f"INC-{incident_id}")
    ]
    assert listed[0]["due_at"].endswith("Z")
    assert main(["--config", cfg, "timers", "list"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split()[:3] == [f"INC-{incident_id}", "approval_reminder", "due"]
