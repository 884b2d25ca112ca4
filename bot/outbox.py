"""Events after commit: notices written with the change, delivered after it, marked sent.

``queue`` runs inside the transaction that changes the incident, so an event is recorded
exactly when its change is. ``Deliverer.deliver_due`` claims due rows one by one (a
compare-and-set, so two workers never deliver the same row at once), hands each to the
notifier for its audience and marks it sent; a failure is retried with backoff, a
notifier's refusal (``retryable = False``) gives up and says so in the incident's thread.
A worker that died holding a row loses its claim after ``CLAIM_SECONDS``; the row is then
delivered again with the same key, which PagerDuty folds into the same alert.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Collection
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bot.config import Settings
from bot.escalation import ENDS, PAGED_ORDER, Event, notices_for
from bot.models import Incident, OutboxItem
from bot.notify import Audience, Notice, NoticeKind, Notifier
from bot.redact import redact
from bot.store import Store

log = logging.getLogger(__name__)
CLAIM_SECONDS = 120
MAX_ATTEMPTS = 12  # about an hour of backoff: then a person is told it was never delivered
STALE_AFTER = timedelta(days=1)  # a call to action nobody could deliver for a day is moot
QUIET_SOURCES = ("drill",)  # a drill's incidents page nobody


def paging_audiences(settings: Settings) -> set[Audience]:
    """Audiences whose PagerDuty routing key is set in this process's environment."""
    pd = settings.pagerduty
    keys: dict[Audience, str | None] = {
        "oncall": pd.routing_key_env,
        "cto": pd.cto_routing_key_env,
    }
    return {a for a, env in keys.items() if env and os.environ.get(env)}


def event_for(
    incident: Incident, kind: NoticeKind, text: str, extra: dict[str, Any] | None = None
) -> Event:
    """The event ``kind`` of ``incident``, its text redacted and cut to one notice line."""
    details = {
        "environment": incident.environment,
        "tier": incident.tier,
        "method": incident.method,
        "requester": incident.requester,
        "state": incident.state,
        **(extra or {}),
    }
    return Event(
        kind,
        incident.id,
        incident.ref,
        incident.environment,
        incident.tier,
        redact(text)[:500],
        details,
    )


def queue_thread(session: Session, incident: Incident, text: str, now: datetime) -> None:
    """A line for the incident's own thread, sent after this transaction commits (a timer's
    result, when no card of the incident is being updated)."""
    if incident.source in QUIET_SOURCES:
        return
    event = event_for(incident, "check_result", text)
    notice = Notice(
        kind="check_result",
        audience="thread",
        incident_id=incident.id,
        ref=incident.ref,
        environment=incident.environment or "",
        tier=incident.tier or "",
        summary=event.summary,
        key=f"rollbot/{incident.ref}/thread",
        details=event.details,
    )
    session.add(
        OutboxItem(
            incident_id=incident.id,
            kind=notice.kind,
            audience=notice.audience,
            notice=asdict(notice),
            created_at=now,
            due_at=now,
        )
    )


def queue_team(session: Session, text: str, now: datetime) -> None:
    """A reminder for the devops channel that belongs to no incident (the drill is due)."""
    notice = Notice(
        kind="reminder",
        audience="devops",
        incident_id=None,
        ref="",
        environment="",
        tier="",
        summary=redact(text)[:500],
        key=f"rollbot/team/{now.isoformat()}",
    )
    session.add(
        OutboxItem(
            incident_id=None,
            kind=notice.kind,
            audience=notice.audience,
            notice=asdict(notice),
            created_at=now,
            due_at=now,
        )
    )


def queue(
    session: Session,
    incident: Incident,
    event: Event,
    now: datetime,
    settings: Settings,
    can_page: Collection[Audience] | None = None,
    *,
    force_page: bool = False,
) -> list[OutboxItem]:
    """Record the notices ``event`` means, in the caller's transaction; ``force_page``
    pages on-call whatever the hour (an approval nobody gave)."""
    if incident.source in QUIET_SOURCES:
        return []
    paged = set(
        session.scalars(
            select(OutboxItem.audience).where(
                OutboxItem.incident_id == incident.id,
                OutboxItem.audience.in_(PAGED_ORDER),
                OutboxItem.kind.in_(("opened", "approval_waiting", "step_failed", "check_failed")),
            )
        )
    )
    pageable = paging_audiences(settings) if can_page is None else can_page
    rows = [
        OutboxItem(
            incident_id=incident.id,
            kind=n.kind,
            audience=n.audience,
            notice=asdict(n),
            created_at=now,
            due_at=now,
        )
        for n in notices_for(
            event, now, settings, can_page=pageable, paged=paged, force_page=force_page
        )
    ]
    session.add_all(rows)
    return rows


def page_states_in(session: Session, incident_id: int) -> dict[str, str]:
    """Per paged audience, whether its alert is "triggered" or "acknowledged" (ended ones
    are left out): the newest paging notice of each audience decides."""
    rows = session.execute(
        select(OutboxItem.audience, OutboxItem.kind)
        .where(OutboxItem.incident_id == incident_id, OutboxItem.audience.in_(PAGED_ORDER))
        .order_by(OutboxItem.id)
    ).all()
    latest: dict[str, str] = {}
    for audience, kind in rows:
        latest[audience] = kind
    return {
        a: "acknowledged" if k == "acknowledged" else "triggered"
        for a, k in latest.items()
        if k not in ENDS
    }


def page_states(store: Store, incident_id: int) -> dict[str, str]:
    with store.read() as session:
        return page_states_in(session, incident_id)


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s ... capped at 10 minutes."""
    return timedelta(seconds=min(600, 5 * 2 ** max(0, attempts - 1)))


def _unclaimed(now: datetime) -> ColumnElement[bool]:
    """Nobody holds the row: never claimed, or its deliverer died (claim older than a lease)."""
    stale = now - timedelta(seconds=CLAIM_SECONDS)
    return or_(OutboxItem.claimed_at.is_(None), OutboxItem.claimed_at < stale)


class Deliverer:
    """Delivers due notices through the notifiers of their audiences."""

    def __init__(
        self,
        store: Store,
        notifiers: list[Notifier],
        clock: Callable[[], datetime],
        *,
        link_for: Callable[[Incident], str | None] = lambda _i: None,
        tell_thread: Callable[[int, str], None] = lambda _i, _t: None,
        not_yet: Callable[[Incident, OutboxItem], bool] = lambda _i, _r: False,
        # link_for and not_yet are asked only about notices of an incident.
    ) -> None:
        self.store = store
        self.by_audience = {a: n for n in notifiers for a in n.audiences}
        self.clock = clock
        self.link_for = link_for
        self.tell_thread = tell_thread
        self.not_yet = not_yet  # e.g. wait for the incident's thread, to link to it
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def deliver_due(self, limit: int = 50) -> int:
        """Deliver what is due now; how many were sent."""
        sent = 0
        while sent < limit:
            ready = self._ready()
            taken = 0
            for row, incident in ready[: limit - sent]:
                if self._take(row):
                    taken += 1
                    sent += self._deliver(row, incident)
            if taken == 0:
                break
        return sent

    def _ready(self) -> list[tuple[OutboxItem, Incident | None]]:
        """The due rows nobody holds, with their incidents, in one read (an idle deliverer
        never takes SQLite's write lock); whether a row waits is decided on what it returned.
        Each is then taken by compare-and-set, so one read serves a batch of deliveries."""
        now = self.clock()
        with self.store.read() as session:
            rows = session.execute(
                select(OutboxItem, Incident)
                .outerjoin(Incident, Incident.id == OutboxItem.incident_id)
                .where(
                    OutboxItem.sent_at.is_(None),
                    OutboxItem.given_up_at.is_(None),
                    OutboxItem.audience.in_(list(self.by_audience)),
                    OutboxItem.due_at <= now,
                    _unclaimed(now),
                )
                .order_by(OutboxItem.id)
                .limit(20)
            ).all()
            session.expunge_all()
        return [(row, incident) for row, incident in rows if not self._held(row, incident)]

    def _take(self, row: OutboxItem) -> bool:
        """Claim ``row`` unless another deliverer sent or claimed it since it was read."""
        now = self.clock()
        return bool(
            self.store.execute_once(
                update(OutboxItem)
                .where(OutboxItem.id == row.id, OutboxItem.sent_at.is_(None), _unclaimed(now))
                .values(claimed_by=self.worker_id, claimed_at=now)
            )
        )

    def _held(self, row: OutboxItem, incident: Incident | None) -> bool:
        return incident is not None and self.not_yet(incident, row)

    def _deliver(self, row: OutboxItem, incident: Incident | None) -> int:
        link = self.link_for(incident) if incident is not None else None
        notice = Notice(**{**row.notice, "link": link})
        if self.clock() - row.created_at > STALE_AFTER and notice.kind not in ENDS:
            self._give_up(row, "too old to be worth sending")
            return 0
        try:
            self.by_audience[row.audience].deliver(notice)  # type: ignore[index]
        except Exception as exc:  # a notifier's failure must never stop the others
            self._failed(row, notice, exc)
            return 0
        with self.store.session() as session:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id == row.id, OutboxItem.claimed_by == self.worker_id)
                .values(sent_at=self.clock(), last_error=None)
            )
        return 1

    def _give_up(self, row: OutboxItem, reason: str) -> None:
        with self.store.session() as session:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id == row.id, OutboxItem.claimed_by == self.worker_id)
                .values(given_up_at=self.clock(), last_error=reason)
            )

    def _failed(self, row: OutboxItem, notice: Notice, exc: Exception) -> None:
        reason = redact(str(exc) or type(exc).__name__)
        attempts = row.attempts + 1
        give_up = getattr(exc, "retryable", True) is False or attempts >= MAX_ATTEMPTS
        now = self.clock()
        with self.store.session() as session:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id == row.id, OutboxItem.claimed_by == self.worker_id)
                .values(
                    attempts=attempts,
                    last_error=reason,
                    claimed_by=None,
                    claimed_at=None,
                    due_at=now + backoff(attempts),
                    given_up_at=now if give_up else None,
                )
            )
        log.warning(
            "notice %s to %s failed (attempt %s): %s", row.id, row.audience, attempts, reason
        )
        if (give_up or attempts == 1) and row.incident_id is not None:
            what = "gave up" if give_up else "will retry"
            self.tell_thread(
                row.incident_id,
                f":warning: {notice.kind} notice to {row.audience} failed ({what}): {reason}",
            )
