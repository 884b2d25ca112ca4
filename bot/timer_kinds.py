"""The built-in timer kinds: what an incident's wait for approval, its resolution and the
team's calendar (cron lines) start, and what each does when it fires.

- ``approval_reminder``: the incident still waits for approval of the same plan after
  ``remind_after_minutes``: devops is told (the admin mentioned in business hours), and
  the page is set for ``page_after_minutes`` after the wait began.
- ``approval_page``: still waiting then: on-call is paged whatever the hour.
- ``postmortem_reminder``: ``postmortem_after_days`` after a resolution, devops is reminded.
- ``drill_reminder``, ``runbook_review_reminder``: at each occurrence of their cron line a
  reminder to the devops channel and an audit event (of no incident), then the next
  occurrence is scheduled.

Conditions are checked when a timer fires, not cleaned up when they stop holding: a
reminder for a plan that was approved, re-planned or cancelled does nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import outbox
from bot.config import Settings
from bot.escalation import PAGED_ORDER
from bot.lifecycle import State, in_words
from bot.models import Incident, Timer
from bot.timers import (
    PENDING,
    Handler,
    Skip,
    cancel,
    describe,
    late_note,
    lock_scope,
    register_timer_kind,
    schedule,
)

if TYPE_CHECKING:
    from bot.service import Rollbot

APPROVAL_REMINDER = "approval_reminder"
APPROVAL_PAGE = "approval_page"
POSTMORTEM_REMINDER = "postmortem_reminder"
DRILL_REMINDER = "drill_reminder"
RUNBOOK_REVIEW_REMINDER = "runbook_review_reminder"
# kind -> (the [reminders] field holding its cron line, what it reminds of)
CRON_KINDS: dict[str, tuple[str, str]] = {
    DRILL_REMINDER: ("drill_cron", "the quarterly restore drill is due (rollbot drill)"),
    RUNBOOK_REVIEW_REMINDER: ("runbook_review_cron", "the runbook review is due"),
}


# ----------------------------------------------------------------- starting timers
def timers_for_transition(
    session: Session, bot: Rollbot, incident: Incident, target: State
) -> None:
    """Entering a wait for approval sets its reminder; a resolution its post-mortem one."""
    if incident.source in outbox.QUIET_SOURCES:
        return  # a drill's incidents remind nobody
    now = bot.clock()
    if target == State.AWAITING_APPROVAL:
        _await_approval(session, bot, incident, now)
    elif target == State.RESOLVED:
        due = now + timedelta(days=bot.settings.reminders.postmortem_after_days)
        payload = {"resolved_at": now.isoformat()}
        schedule(
            session, POSTMORTEM_REMINDER, due, incident_id=incident.id, payload=payload, now=now
        )


def _await_approval(session: Session, bot: Rollbot, incident: Incident, now: datetime) -> None:
    cancel(session, APPROVAL_PAGE, incident.id, "a new wait for approval began", now=now)
    if not incident.tier or bot.policy(incident.tier).min_approvals == 0:  # type: ignore[arg-type]
        cancel(session, APPROVAL_REMINDER, incident.id, "needs no approval", now=now)
        return
    due = now + timedelta(minutes=bot.settings.approvals.remind_after_minutes)
    payload = {"plan_hash": incident.plan_hash, "since": now.isoformat()}
    schedule(session, APPROVAL_REMINDER, due, incident_id=incident.id, payload=payload, now=now)


def ensure_cron_timers(session: Session, bot: Rollbot) -> list[Timer]:
    """The next occurrence of each cron reminder, unless one for the same line is pending."""
    made = []
    for kind, (field, _words) in CRON_KINDS.items():
        line = getattr(bot.settings.reminders, field)
        lock_scope(session, None, kind)
        current = session.scalars(
            select(Timer).where(
                Timer.kind == kind, Timer.incident_id.is_(None), Timer.state == PENDING
            )
        ).first()
        if current is not None and current.payload.get("cron") == line:
            continue
        due = next_occurrence(line, bot.clock(), bot.settings)
        made.append(schedule(session, kind, due, payload={"cron": line}, now=bot.clock()))
    return made


def next_occurrence(line: str, after: datetime, settings: Settings) -> datetime:
    """The first time ``line`` matches strictly after ``after``, read in business hours' zone."""
    trigger = CronTrigger.from_crontab(line, timezone=settings.business_hours.timezone)
    nxt = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    if nxt is None:
        raise ValueError(f"cron line {line!r} has no next occurrence")
    return nxt.astimezone(UTC)


# ----------------------------------------------------------------- firing
def _still_waiting(
    bot: Rollbot, incident: Incident | None, timer: Timer, now: datetime
) -> Incident:
    """The incident, when it still waits for approval of the plan the timer was set for."""
    if incident is None:
        raise Skip("its incident no longer exists")
    if incident.state != State.AWAITING_APPROVAL.value:
        raise Skip(f"{incident.ref} is {in_words(incident.state)} now")
    if incident.plan_hash != timer.payload.get("plan_hash"):
        raise Skip(f"{incident.ref} was re-planned since; its new plan has its own timer")
    policy = bot.policy(incident.tier)  # type: ignore[arg-type]
    valid = len(policy.valid(incident.approvals, incident.plan_hash, now))
    if valid >= policy.min_approvals:
        raise Skip(f"{incident.ref} is approved ({valid}/{policy.min_approvals})")
    return incident


def _waited(timer: Timer, now: datetime) -> tuple[datetime, int]:
    since = datetime.fromisoformat(timer.payload["since"])
    return since, int((now - since).total_seconds() // 60)


def approval_reminder(
    session: Session, bot: Rollbot, incident: Incident | None, timer: Timer, now: datetime
) -> str:
    incident = _still_waiting(bot, incident, timer, now)
    since, waited = _waited(timer, now)
    text = f"{incident.ref} still waits for approval after {waited} min{late_note(timer, now)}"
    outbox.queue(
        session, incident, outbox.event_for(incident, "approval_waiting", text), now, bot.settings
    )
    page_at = since + timedelta(minutes=bot.settings.approvals.page_after_minutes)
    schedule(
        session, APPROVAL_PAGE, page_at, incident_id=incident.id, payload=timer.payload, now=now
    )
    return f"reminded after {waited} min; page due {page_at:%Y-%m-%d %H:%M} UTC"


def approval_page(
    session: Session, bot: Rollbot, incident: Incident | None, timer: Timer, now: datetime
) -> str:
    incident = _still_waiting(bot, incident, timer, now)
    _since, waited = _waited(timer, now)
    text = (
        f"{incident.ref} still waits for approval after {waited} min: paging on-call"
        f"{late_note(timer, now)}"
    )
    event = outbox.event_for(incident, "approval_waiting", text)
    rows = outbox.queue(session, incident, event, now, bot.settings, force_page=True)
    paged = [r.audience for r in rows if r.audience in PAGED_ORDER]
    return f"paged {', '.join(paged)}" if paged else "no PagerDuty routing key: told devops only"


def postmortem_reminder(
    session: Session, bot: Rollbot, incident: Incident | None, timer: Timer, now: datetime
) -> str:
    if incident is None or incident.state != State.RESOLVED.value:
        raise Skip("its incident is no longer resolved")
    ago = describe(now - datetime.fromisoformat(timer.payload["resolved_at"]))
    missing = "" if incident.root_cause else " (no root cause recorded yet)"
    text = f"{incident.ref} was resolved {ago} ago: time for its post-mortem{missing}"
    outbox.queue(
        session,
        incident,
        outbox.event_for(incident, "reminder", text + late_note(timer, now)),
        now,
        bot.settings,
    )
    return "reminded devops of the post-mortem"


def _cron_handler(kind: str, field: str, words: str) -> Handler:
    def fire(
        session: Session, bot: Rollbot, incident: Incident | None, timer: Timer, now: datetime
    ) -> str:
        line = getattr(bot.settings.reminders, field)
        text = f"Reminder: {words}{late_note(timer, now)}"
        # In this transaction, not bot.note (a session of its own): recorded iff it fired.
        outbox.queue_team(session, text, now)
        bot.audit.record(
            session,
            actor="rollbot",
            kind="reminder",
            message=text,
            data={"timer": timer.id, "cron": line, "due_at": timer.due_at.isoformat()},
        )
        due = next_occurrence(line, max(now, timer.due_at), bot.settings)
        schedule(session, kind, due, payload={"cron": line}, now=now)
        return text

    return fire


# ----------------------------------------------------------------- notices
register_timer_kind(APPROVAL_REMINDER, approval_reminder)
register_timer_kind(APPROVAL_PAGE, approval_page)
register_timer_kind(POSTMORTEM_REMINDER, postmortem_reminder)
for _kind, (_field, _words) in CRON_KINDS.items():
    register_timer_kind(_kind, _cron_handler(_kind, _field, _words))
