"""The post-mortem draft (``bot.postmortem``) and its meeting slot (``bot.meeting_slot``):
the draft tells the incident from the record, in the runbook's words and without secrets;
the slot is the first business-hours one after the delay, in the team's zone, DST included."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.config import WEEKDAYS, BusinessHoursConfig
from bot.errors import NotFoundError, RollbotError
from bot.executor import Executor, NullSink
from bot.meeting_slot import first_slot
from bot.models import Incident, Step
from bot.postmortem import (
    TO_BE_WRITTEN,
    decision_path,
    default_delay,
    draft_markdown,
    format_duration,
    gather,
    path_summary,
    render_markdown,
)
from bot.redact import register_secret
from bot.runbook import RUNBOOK
from bot.service import Rollbot
from tests.core_fixtures import Clock

BERLIN = ZoneInfo("Europe/Berlin")
STEP_MINUTES = {1: 2, 2: 7, 3: 1}  # how long each step of the restore "takes"


class AdvancingSink(NullSink):
    """Moves the test clock while a step runs, so its start and finish differ."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def step_started(self, incident: Incident, step: Step) -> None:
        self.clock.advance(minutes=STEP_MINUTES[step.seq])


def resolved_restore(bot: Rollbot, clock: Clock, description: str = "bad migration") -> int:
    """A production PITR on the fake platform, run to the end and resolved."""
    incident = bot.open_incident("alice", description, environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    bot.choose_method(incident.id, "pitr", "alice", options={"expect": "0001_good"})
    clock.advance(minutes=1)
    bot.request_approval(incident.id, "alice")
    clock.advance(minutes=4)
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    done = Executor(bot).run_incident(incident.id, AdvancingSink(clock))
    assert done.state == "verifying", [s.error for s in done.steps]
    bot.tick(incident.id, "after.smoke_tests", "carol")
    bot.record_root_cause(incident.id, "alice", "the migration dropped users.email in one step")
    clock.advance(minutes=20)
    bot.resolve(incident.id, "alice", confirm_unticked=True)
    return incident.id


# --------------------------------------------------------------------------- the draft


def test_the_draft_tells_the_incident_from_its_record(bot: Rollbot, clock: Clock) -> None:
    opened_at = clock.now
    incident_id = resolved_restore(bot, clock)
    draft = draft_markdown(bot, incident_id)
    ref = f"INC-{incident_id}"

    assert draft.startswith(f"# Post-mortem: {ref} — bad migration\n")
    assert "| Environment | production (tier: production) |" in draft
    assert "| Requested by | alice (via console) |" in draft
    assert "| Opened | 2026-11-24 03:00:00 UTC |" in draft
    # 1 + 4 minutes to approval, 10 minutes of steps, 20 more before the resolution
    assert "| Duration | 35 min 00 s |" in draft
    assert f"| Closed | {(opened_at + timedelta(minutes=35)):%Y-%m-%d %H:%M:%S} UTC |" in draft

    # the decision path in the runbook's words
    root = RUNBOOK.node(RUNBOOK.root)
    environment = root.choice("production")
    problem = RUNBOOK.node(environment.next_node).choice("data_corruption")
    assert f"1. {root.question} **{environment.label}**" in draft
    assert f"**{problem.label}**" in draft
    assert f"The runbook says: **{problem.summary}**" in draft

    # the method and its plan (the steps' plan_text)
    assert f"**{RUNBOOK.method('pitr').heading}** (`pitr`)" in draft
    assert "create a database at 0001_good and point the environment at it" in draft
    assert "2. Switch to the good state (destructive)" in draft

    # approvals: who asked, who approved, when, until when
    assert "Approval requested by alice" in draft
    assert "| bob | 2026-11-24 03:05:00 UTC | 2026-11-24 03:35:00 UTC | yes |" in draft

    # steps with status, attempt, times and durations; safety copy; where the database lives
    assert "| 1 | Take a safety copy | succeeded | 1 | 2026-11-24 03:05:00 UTC |" in draft
    for seq, minutes in STEP_MINUTES.items():
        line = next(x for x in draft.splitlines() if x.startswith(f"| {seq} | "))
        assert f"| {minutes} min 00 s |" in line, line
    assert "safety snapshot: copy-1 in fake copies (verified)" in draft
    assert f"| Database now lives | fake database restored-{incident_id} |" in draft
    assert f"Step 3 (Verify): succeeded: restored-{incident_id} is at 0001_good" in draft

    # checklists: who ticked, and rollbot's evidence
    assert "- [x] Run smoke tests — ticked by carol at 2026-11-24 03:15:00 UTC" in draft
    assert "- [x] Take snapshot/backup if not automated — ticked by rollbot" in draft
    assert "(evidence: verified snapshot copy-1)" in draft
    assert "- [ ] Monitor error rates\n" in draft

    # notices, root cause, the team's sections, the timeline
    assert "| opened | devops |" in draft and "| resolved | devops |" in draft
    assert "## Root cause\n\nthe migration dropped users.email in one step\n" in draft
    for heading in ("What went well", "What went wrong", "Action items (update the runbook?)"):
        assert f"## {heading}\n\n- " in draft
    timeline = draft.split("## Timeline", 1)[1]
    assert f"| alice | {ref} opened in production (production): bad migration |" in timeline
    assert f"| bob | {ref} approved by bob (1/1) |" in timeline
    assert f"{ref} resolved with" in timeline


def test_times_are_also_in_the_teams_zone(bot: Rollbot, clock: Clock) -> None:
    incident_id = resolved_restore(bot, clock)
    facts = dataclasses.replace(gather(bot, incident_id), timezone="Europe/Berlin")
    draft = render_markdown(facts)
    assert "| Opened | 2026-11-24 03:00:00 UTC (2026-11-24 04:00:00 CET, Europe/Berlin) |" in draft
    assert "| Time (UTC) | Time (Europe/Berlin) | Actor | Event |" in draft


def test_a_fresh_incident_has_placeholders_not_errors(bot: Rollbot) -> None:
    incident = bot.open_incident("alice", "something is off")
    draft = draft_markdown(bot, incident.id)
    assert "_The decision tree was not answered._" in draft
    assert "_No method was chosen._" in draft
    assert "Approval never requested" in draft
    assert "| Closed | still open |" in draft
    assert TO_BE_WRITTEN in draft
    with pytest.raises(NotFoundError):
        draft_markdown(bot, 404)


def test_no_secret_reaches_the_draft(bot: Rollbot, clock: Clock) -> None:
    register_secret("tok-3f9a-very-secret")
    incident_id = resolved_restore(
        bot, clock, "restore broke; was postgresql://app:s3cr3t-pw@db.internal/prod"
    )
    # Text that reached the store without the core's scrubbing (an older build, a provider's
    # message): the draft redacts on its own.
    with bot.store.session() as session:
        incident = bot._load(session, incident_id)
        incident.description = "DSN postgresql://app:s3cr3t-pw@db.internal/prod"
        incident.root_cause = "PGPASSWORD=hunter2-secret in the deploy log"
        step = sorted(incident.steps, key=lambda s: s.seq)[2]
        step.result = {**step.result, "lines": ["token tok-3f9a-very-secret leaked"]}
    draft = draft_markdown(bot, incident_id)
    for secret in ("s3cr3t-pw", "hunter2-secret", "tok-3f9a-very-secret"):
        assert secret not in draft
    assert "postgresql://app:***@db.internal/prod" in draft
    assert "PGPASSWORD=***" in draft


def test_decision_path_helpers() -> None:
    assert decision_path([]) == ([], "")
    assert path_summary([]) == "(not triaged)"
    steps, outcome = decision_path(["production", "data_corruption"])
    assert [s.answer for s in steps] == [
        RUNBOOK.node(RUNBOOK.root).choice("production").label,
        RUNBOOK.walk(["production"]).choice("data_corruption").label,  # type: ignore[union-attr]
    ]
    assert outcome and path_summary(["production", "data_corruption"]).endswith(outcome)
    steps, outcome = decision_path(["production", "no_such_answer"])
    assert steps[-1].answer == "no_such_answer (no longer in the runbook)" and outcome == ""


def test_format_duration() -> None:
    assert format_duration(None) == "-"
    assert format_duration(timedelta(seconds=12)) == "12 s"
    assert format_duration(timedelta(minutes=4, seconds=10)) == "4 min 10 s"
    assert format_duration(timedelta(hours=1, minutes=5)) == "1 h 05 min"
    assert format_duration(timedelta(days=2, hours=3)) == "2 d 3 h"


def test_default_delay_reads_the_reminders_section(bot: Rollbot) -> None:
    reminders = getattr(bot.settings, "reminders", None)
    days = getattr(reminders, "postmortem_after_days", 2)
    assert default_delay(bot.settings) == timedelta(days=days)
    assert default_delay(object()) == timedelta(days=2)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the slot

UTC_HOURS = BusinessHoursConfig()  # UTC, mon-fri, 09:00-18:00


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_weekday_afternoon_gives_the_next_slot_on_the_grid() -> None:
    slot = first_slot(utc(2026, 11, 24, 14, 10), UTC_HOURS, delay=timedelta(days=2))  # a Tuesday
    assert (slot.start, slot.end) == (utc(2026, 11, 26, 14, 15), utc(2026, 11, 26, 15, 15))
    exact = first_slot(utc(2026, 11, 24, 14, 30), UTC_HOURS, delay=timedelta(days=2))
    assert exact.start == utc(2026, 11, 26, 14, 30)  # on the grid already: no rounding


def test_friday_evening_gives_monday_morning() -> None:
    slot = first_slot(utc(2026, 11, 25, 19, 0), UTC_HOURS, delay=timedelta(days=2))
    assert slot.start == utc(2026, 11, 30, 9, 0)  # Friday 19:00 -> Monday 09:00
    weekend = first_slot(utc(2026, 11, 26, 10, 0), UTC_HOURS, delay=timedelta(days=2))
    assert weekend.start == utc(2026, 11, 30, 9, 0)  # Saturday -> Monday


def test_holidays_are_skipped() -> None:
    hours = BusinessHoursConfig(holidays=(date(2026, 11, 30), date(2026, 12, 1)))
    slot = first_slot(utc(2026, 11, 25, 19, 0), hours, delay=timedelta(days=2))
    assert slot.start == utc(2026, 12, 2, 9, 0)


def test_a_slot_never_crosses_the_days_end() -> None:
    hours = BusinessHoursConfig(timezone="Europe/Berlin", start=time(9), end=time(17))
    length = timedelta(minutes=60)
    fits = first_slot(datetime(2026, 11, 24, 16, 0, tzinfo=BERLIN), hours, delay=timedelta(0))
    assert fits.local_start.time() == time(16) and fits.local_end.time() == time(17)
    late = first_slot(datetime(2026, 11, 24, 16, 1, tzinfo=BERLIN), hours, delay=timedelta(0))
    assert late.local_start == datetime(2026, 11, 25, 9, 0, tzinfo=BERLIN)

    # Any moment of two weeks (every 37 minutes), over a DST switch: inside business hours.
    moment = datetime(2026, 10, 19, tzinfo=UTC)
    while moment < datetime(2026, 11, 2, tzinfo=UTC):
        slot = first_slot(moment, hours, delay=timedelta(hours=5), length=length)
        start, end = slot.local_start, slot.local_end
        assert slot.start >= moment + timedelta(hours=5)
        assert slot.end - slot.start == length
        assert WEEKDAYS[start.weekday()] in hours.days and start.date() == end.date()
        assert hours.start <= start.time() and end.time() <= hours.end, (moment, slot)
        moment += timedelta(minutes=37)

    with pytest.raises(RollbotError, match="no 600-minute slot"):
        first_slot(moment, hours, length=timedelta(hours=10))


def test_the_dst_switch_weeks_give_the_right_utc_time() -> None:
    hours = BusinessHoursConfig(timezone="Europe/Berlin", start=time(9), end=time(17))
    two_days = timedelta(days=2)
    # Spring: Sunday 2026-03-29 clocks go 02:00 CET -> 03:00 CEST (UTC+1 -> UTC+2).
    before = first_slot(utc(2026, 3, 18, 12, 0), hours, delay=two_days)  # Fri 13:00 CET
    assert before.start == utc(2026, 3, 20, 12, 0)
    spring = first_slot(utc(2026, 3, 27, 10, 0), hours, delay=two_days)  # -> Sunday
    assert spring.start == utc(2026, 3, 30, 7, 0)  # Monday 09:00 CEST
    assert spring.local_start == datetime(2026, 3, 30, 9, 0, tzinfo=BERLIN)
    across = first_slot(utc(2026, 3, 28, 13, 0), hours, delay=two_days)  # Sat 14:00 CET + 48 h
    assert across.start == utc(2026, 3, 30, 13, 0)  # 15:00 CEST: 48 real hours later
    # Autumn: Sunday 2026-10-25 clocks go 03:00 CEST -> 02:00 CET (UTC+2 -> UTC+1).
    friday = first_slot(utc(2026, 10, 21, 16, 0), hours, delay=two_days)  # Wed 18:00 CEST
    assert friday.start == utc(2026, 10, 26, 8, 0)  # Friday 18:00 is closed: Monday 09:00 CET
    autumn = first_slot(utc(2026, 10, 22, 6, 0), hours, delay=two_days)  # -> Sat 08:00 CEST
    assert autumn.start == utc(2026, 10, 26, 8, 0)
    thursday = first_slot(utc(2026, 10, 20, 5, 0), hours, delay=two_days)  # Thu 07:00 CEST
    assert thursday.start == utc(2026, 10, 22, 7, 0)  # 09:00 CEST


def test_a_zone_whose_day_differs_from_utc() -> None:
    hours = BusinessHoursConfig(timezone="Pacific/Auckland", start=time(9), end=time(17))
    # Sunday 22:00 UTC is Monday 11:00 in Auckland (NZDT, UTC+13).
    slot = first_slot(utc(2026, 11, 29, 22, 0), hours, delay=timedelta(0))
    assert slot.start == utc(2026, 11, 29, 22, 0)
    assert slot.local_start == datetime(2026, 11, 30, 11, 0, tzinfo=ZoneInfo("Pacific/Auckland"))
