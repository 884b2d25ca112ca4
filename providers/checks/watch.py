"""The error-rate watch after a rollback: a durable timer (``checks.error_watch``) that takes
a reading every ``every_minutes`` until ``watch_minutes`` after the checks step ran.

Each firing, in its one transaction (``bot.timers``): take a reading, write it to the
incident's audit trail, queue a ``check_failed`` notice through the outbox when it
escalates (devops in business hours, PagerDuty after hours), and schedule the next
reading. What escalates, chosen so people hear once per problem, not every five minutes:

- a reading above the threshold when the previous one was not (a breach *starts*); while
  it stays above, each reading is recorded but not re-announced; back under, recorded.
- ``BLIND_AFTER`` consecutive readings that could not be taken (the metrics endpoint is
  unreachable, errors, or has no series): the watch is blind, said once until a reading
  succeeds again. A single failed reading is only a result line.

The watch reads the environment's *current* ``[checks]`` (a corrected query applies at
the next reading); its schedule is fixed when it starts. It stops early, doing nothing,
when its incident was cancelled or the environment no longer has an error-rate source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from bot import outbox
from bot.audit import AuditTrail
from bot.config import ChecksConfig, EnvironmentConfig
from bot.errors import RollbotError
from bot.lifecycle import State
from bot.models import Incident, Timer
from bot.timers import Skip, describe, register_timer_kind, schedule
from providers.checks.error_rate import Reading, read_error_rate

if TYPE_CHECKING:
    from bot.service import Rollbot

KIND = "checks.error_watch"
BLIND_AFTER = 3  # consecutive readings that could not be taken before anyone is told


@dataclass(frozen=True)
class WatchState:
    """What the watch carries from one reading to the next (the timer's payload)."""

    environment: str
    started_at: str  # ISO times: the payload is JSON
    ends_at: str
    every_minutes: int
    readings: int = 0
    failures: int = 0  # consecutive readings that could not be taken
    breaching: bool = False  # the last reading taken was above the threshold
    blind_told: bool = False  # the current run of failures was announced
    breaches: int = 0
    highest: float | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> WatchState:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in payload.items() if k in fields})

    def after(self, reading: Reading) -> WatchState:
        """This state once ``reading`` is counted."""
        if reading.value is None:
            return replace(self, readings=self.readings + 1, failures=self.failures + 1)
        highest = reading.value if self.highest is None else max(self.highest, reading.value)
        return replace(
            self,
            readings=self.readings + 1,
            failures=0,
            blind_told=False,
            breaching=reading.breached,
            breaches=self.breaches + int(reading.breached),
            highest=highest,
        )


# ----------------------------------------------------------------- starting
def start_watch(
    session: Session,
    audit: AuditTrail,
    incident: Incident,
    env: EnvironmentConfig,
    started_at: datetime,
    baseline: Reading,
) -> Timer:
    """Schedule the first reading ``every_minutes`` after ``started_at``, in the caller's
    transaction (a newer watch of the same incident replaces an older one).

    ``baseline`` (the reading the step took) is recorded but does not escalate: right after
    a rollback a windowed rate still counts the errors from before it. A failed baseline
    counts toward ``BLIND_AFTER``.
    """
    checks = env.checks
    ends = started_at + timedelta(minutes=checks.watch_minutes)
    state = WatchState(
        environment=env.name,
        started_at=started_at.isoformat(),
        ends_at=ends.isoformat(),
        every_minutes=checks.every_minutes,
        failures=0 if baseline.value is not None else 1,
    )
    first = started_at + timedelta(minutes=checks.every_minutes)
    timer = schedule(
        session, KIND, first, incident_id=incident.id, payload=asdict(state), now=started_at
    )
    audit.record(
        session,
        actor="rollbot",
        kind="error_rate",
        message=(
            f"{incident.ref} error-rate watch started: every {checks.every_minutes} min for "
            f"{checks.watch_minutes} min (until {ends:%H:%M} UTC), escalating above "
            f"{checks.error_rate_threshold:g}; baseline {baseline.line()}"
        ),
        incident_id=incident.id,
        data={"timer": timer.id, "first_at": first.isoformat(), "baseline": baseline.as_data()},
    )
    return timer


# ----------------------------------------------------------------- firing
def error_watch(
    session: Session, bot: Rollbot, incident: Incident | None, timer: Timer, now: datetime
) -> str:
    """One reading of the watch: recorded, escalated when it should be, the next one set."""
    incident, checks = _still_watching(bot, incident)
    before = WatchState.from_payload(timer.payload)
    reading = read_error_rate(checks)
    state = before.after(reading)
    minutes = describe(now - datetime.fromisoformat(before.started_at))
    line = f"{incident.ref} error-rate watch reading {state.readings} ({minutes} in): "
    bot.audit.record(
        session,
        actor="rollbot",
        kind="error_rate",
        message=line + reading.line(),
        incident_id=incident.id,
        data={"timer": timer.id, **reading.as_data()},
    )
    state, told = _escalate(session, bot, incident, before, state, reading, minutes, now)
    outcome = reading.line() + (f"; told {told}" if told else "")
    outbox.queue_thread(session, incident, line + outcome, now)
    return outcome + "; " + _continue(session, bot, incident, timer, state, now)


def _still_watching(bot: Rollbot, incident: Incident | None) -> tuple[Incident, ChecksConfig]:
    if incident is None:
        raise Skip("its incident no longer exists")
    if incident.state == State.CANCELLED.value:
        raise Skip(f"{incident.ref} was cancelled: the watch stops")
    try:
        env = bot.settings.environment(incident.environment)
    except RollbotError as exc:
        raise Skip(f"{incident.ref}: {exc}") from None
    if not env.checks.has_error_rate_source():
        raise Skip(f"{env.name} has no error-rate source configured any more")
    return incident, env.checks


def _escalate(
    session: Session,
    bot: Rollbot,
    incident: Incident,
    before: WatchState,
    state: WatchState,
    reading: Reading,
    minutes: str,
    now: datetime,
) -> tuple[WatchState, str]:
    """Queue the ``check_failed`` notice this reading calls for, if any; who was told."""
    env = f"{incident.ref} {incident.environment}"
    if reading.breached and not before.breaching:
        text = f"{env}: {reading.line()}, {minutes} after the rollback"
    elif reading.value is None and state.failures >= BLIND_AFTER and not state.blind_told:
        text = (
            f"{env}: the error-rate watch is blind: {state.failures} readings in a row "
            f"failed; last: {reading.error}"
        )
        state = replace(state, blind_told=True)
    else:
        return state, ""
    event = outbox.event_for(
        incident, "check_failed", text, {"check": "error_rate", **reading.as_data()}
    )
    rows = outbox.queue(session, incident, event, now, bot.settings)
    return state, ", ".join(sorted({r.audience for r in rows}))


def _continue(
    session: Session,
    bot: Rollbot,
    incident: Incident,
    timer: Timer,
    state: WatchState,
    now: datetime,
) -> str:
    """Schedule the next reading (missed ones are skipped, not taken in a burst), or end."""
    every = timedelta(minutes=state.every_minutes)
    nxt = timer.due_at + every
    while nxt <= now:
        nxt += every
    if nxt <= datetime.fromisoformat(state.ends_at):
        schedule(session, KIND, nxt, incident_id=incident.id, payload=asdict(state), now=now)
        return f"next reading {nxt:%H:%M} UTC"
    highest = "none taken" if state.highest is None else f"{state.highest:.4g}"
    text = (
        f"{incident.ref} error-rate watch ended after {state.readings} readings: highest "
        f"{highest}, {state.breaches} of them above the threshold"
    )
    bot.audit.record(
        session,
        actor="rollbot",
        kind="error_rate",
        message=text,
        incident_id=incident.id,
        data={"timer": timer.id, "readings": state.readings, "breaches": state.breaches},
    )
    outbox.queue_thread(session, incident, text, now)
    return "watch ended"


register_timer_kind(KIND, error_watch)
