"""Durable timers: rows in the state database that any rollbot process fires, exactly once.

Why rows and not a scheduler's job store: a timer must survive restarts (a missed one
fires late, never vanishes) and several processes sweep at once with no leader. Each
process runs :func:`sweep` every few seconds (``handlers.timers``); firing one timer is
one transaction: lock its scope (the incident row, ``FOR UPDATE`` on PostgreSQL; an
advisory lock for timers without an incident; SQLite serialises writers anyway), check it
is still the newest timer of its (incident, kind), mark it fired with a
compare-and-set, and write its effects (outbox notices, the next timer). The mark and
the effects commit together: a crash never half-fires a timer, and nothing fires twice.

A handler whose condition no longer holds raises :class:`Skip`: its effects are rolled
back to a savepoint and the timer is marked "skipped" with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from bot.models import Incident, Timer, utcnow
from bot.redact import redact

if TYPE_CHECKING:
    from bot.lifecycle import State
    from bot.service import Rollbot

log = logging.getLogger(__name__)

PENDING, FIRED, SUPERSEDED, SKIPPED = "pending", "fired", "superseded", "skipped"
LATE_AFTER = timedelta(minutes=2)  # later than this, the effect says how late it is
_TOKEN = uuid.uuid4().hex[:8]

# (session, bot, incident or None, timer, now) -> a short outcome; writes its effects.
Handler = Callable[[Session, "Rollbot", Incident | None, Timer, datetime], str]
_HANDLERS: dict[str, Handler] = {}


class Skip(Exception):
    """Raised by a handler whose condition no longer holds: the timer does nothing."""


class _Lost(Exception):
    """The compare-and-set found the timer no longer pending: someone else settled it."""


def register_timer_kind(kind: str, handler: Handler) -> None:
    """Declare what a timer of ``kind`` does when it fires (every sweeping process must)."""
    _HANDLERS[kind] = handler


def registered_kinds() -> list[str]:
    _load_builtins()
    return sorted(_HANDLERS)


def _load_builtins() -> None:
    import bot.timer_kinds  # noqa: F401  (registers the built-in kinds; it imports this module)


def worker_id() -> str:
    """Which process settled a timer (host, pid and a per-import token)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


# ----------------------------------------------------------------- scheduling
def lock_scope(session: Session, incident_id: int | None, kind: str) -> Incident | None:
    """Serialise everyone scheduling or firing timers of (incident, kind); the incident.

    The incident row is what commands lock too, so a timer and a command on the same
    incident never interleave. Timers without an incident take a transaction-scoped
    advisory lock per kind on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    if incident_id is None:
        if postgres:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(kind)})
        return None
    stmt = select(Incident).where(Incident.id == incident_id)
    if postgres:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def _lock_key(kind: str) -> int:
    digest = hashlib.sha256(f"rollbot-timer:{kind}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _same_scope(kind: str, incident_id: int | None, *, pending_only: bool = True) -> Any:
    where_incident = (
        Timer.incident_id.is_(None) if incident_id is None else Timer.incident_id == incident_id
    )
    where = (Timer.kind == kind) & where_incident
    return where & (Timer.state == PENDING) if pending_only else where


def cancel(
    session: Session,
    kind: str,
    incident_id: int | None,
    reason: str,
    *,
    now: datetime | None = None,
) -> int:
    """Supersede the pending timers of (incident, kind); how many there were."""
    lock_scope(session, incident_id, kind)
    return session.execute(
        update(Timer)
        .where(_same_scope(kind, incident_id))
        .values(state=SUPERSEDED, fired_at=now or utcnow(), fired_by=worker_id(), outcome=reason)
        .execution_options(synchronize_session=False)
    ).rowcount


def schedule(
    session: Session,
    kind: str,
    due_at: datetime,
    *,
    incident_id: int | None = None,
    payload: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Timer:
    """A new pending timer in the caller's transaction; it supersedes older pending ones
    of the same (incident, kind): only the newest is current."""
    now = now or utcnow()
    cancel(session, kind, incident_id, "superseded by a newer timer", now=now)
    timer = Timer(
        kind=kind,
        incident_id=incident_id,
        due_at=due_at,
        payload=dict(payload or {}),
        state=PENDING,
        created_at=now,
    )
    session.add(timer)
    session.flush()
    return timer


def on_transition(session: Session, bot: Rollbot, incident: Incident, target: State) -> None:
    """The timers an incident's state change starts (called by ``Rollbot._transition``)."""
    from bot.timer_kinds import timers_for_transition

    timers_for_transition(session, bot, incident, target)


def pending(session: Session) -> list[Timer]:
    return list(session.scalars(select(Timer).where(Timer.state == PENDING).order_by(Timer.due_at)))


# ----------------------------------------------------------------- firing
def sweep(bot: Rollbot, *, limit: int = 100) -> int:
    """Fire the timers due now, one transaction each; how many fired.

    A timer whose handler fails stays pending (logged) and is tried again next sweep.
    """
    now = bot.clock()
    fired = 0
    for timer_id, incident_id, kind in _due(bot, now, limit):
        try:
            fired += fire(bot, timer_id, incident_id, kind)
        except Exception as exc:  # one bad timer must not hold up the others
            log.warning("timer %s (%s) failed, retried next sweep: %s", timer_id, kind, redact(exc))
    return fired


def _due(bot: Rollbot, now: datetime, limit: int) -> list[tuple[int, int | None, str]]:
    kinds = registered_kinds()  # a kind this process cannot run is left to one that can
    with bot.store.read() as session:
        rows = session.execute(
            select(Timer.id, Timer.incident_id, Timer.kind)
            .where(Timer.state == PENDING, Timer.due_at <= now, Timer.kind.in_(kinds))
            .order_by(Timer.due_at, Timer.id)
            .limit(limit)
        ).all()
    return [(r.id, r.incident_id, r.kind) for r in rows]


def fire(bot: Rollbot, timer_id: int, incident_id: int | None, kind: str) -> bool:
    """Settle one due timer in one transaction; True when it fired (this process did it)."""
    now = bot.clock()
    try:
        with bot.store.session() as session:
            incident = lock_scope(session, incident_id, kind)
            timer = session.get(Timer, timer_id, populate_existing=True)
            if timer is None or timer.state != PENDING:
                return False
            # Current: the newest of its (incident, kind) whatever its state (a newer one
            # that already fired or was cancelled outdates this one as well).
            newest = session.scalar(
                select(func.max(Timer.id)).where(_same_scope(kind, incident_id, pending_only=False))
            )
            if newest != timer.id:
                _mark(session, timer_id, SUPERSEDED, now, f"superseded by timer {newest}")
                return False
            _mark(session, timer_id, FIRED, now, None)
            state, outcome = _run(session, bot, incident, timer, now)
            session.execute(
                update(Timer)
                .where(Timer.id == timer_id)
                .values(state=state, outcome=outcome[:2000])
                .execution_options(synchronize_session=False)
            )
    except _Lost:
        return False
    log.info("timer %s (%s) %s: %s", timer_id, kind, state, outcome)
    return state == FIRED


def _mark(session: Session, timer_id: int, state: str, now: datetime, outcome: str | None) -> None:
    """The compare-and-set: only a still-pending timer is settled; else roll back."""
    won = session.execute(
        update(Timer)
        .where(Timer.id == timer_id, Timer.state == PENDING)
        .values(state=state, fired_at=now, fired_by=worker_id(), outcome=outcome)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        raise _Lost


def _run(
    session: Session, bot: Rollbot, incident: Incident | None, timer: Timer, now: datetime
) -> tuple[str, str]:
    """Run the handler in a savepoint: a Skip undoes whatever it wrote before deciding."""
    handler = _HANDLERS[timer.kind]
    if timer.incident_id is not None and incident is None:
        return SKIPPED, "its incident no longer exists"
    try:
        with session.begin_nested():
            outcome = handler(session, bot, incident, timer, now)
    except Skip as skip:
        return SKIPPED, str(skip)
    note = late_note(timer, now)
    return FIRED, outcome if note in outcome else outcome + note


# ----------------------------------------------------------------- words
def late_note(timer: Timer, now: datetime) -> str:
    """`` (fired 3 h 5 min late)`` when it fires well after its time, else nothing."""
    late = now - timer.due_at
    return f" (fired {describe(late)} late)" if late > LATE_AFTER else ""


def describe(delta: timedelta) -> str:
    """A duration in words people read at a glance: ``2 days 4 h``, ``3 h 5 min``, ``7 min``."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days > 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {mins} min" if mins else "")
    return f"{mins} min"
