"""The durable inbox: a request is recorded before it is acknowledged, then claimed once.

An adapter writes each verified request here (:meth:`Inbox.accept`) and only
then acknowledges it; if the write fails or the backlog is over its high-water
mark, it says so instead of acknowledging work that would be dropped. Workers
(other processes, other replicas) claim rows with a compare-and-set and a lease
(:meth:`Inbox.claim`): the oldest unfinished row of an incident first, one at a
time per incident, so clicks on one incident are handled in the order they came.
A row whose worker died is claimed again when its lease runs out; the core's
request keys (``bot.request_context``) make handling it twice act once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    DateTime,
    Insert,
    Row,
    Select,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from bot.models import InboxItem, Step, utcnow
from bot.redact import redact
from bot.store import Store

log = logging.getLogger(__name__)


class InboxStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    REFUSED = "refused"  # the core or the adapter refused it; the person was told
    FAILED = "failed"  # an unexpected error; the person was told
    EXPIRED = "expired"  # waited too long to be acted on; the person was told


UNFINISHED = (InboxStatus.PENDING.value, InboxStatus.CLAIMED.value)
NOW = bindparam("now", type_=DateTime())


def _unfinished(status: ColumnElement[str]) -> ColumnElement[bool]:
    """``status IN ('pending', 'claimed')`` written into the SQL, not bound: the statement is
    compiled once and cached, where a bound list is expanded again at every execution (a
    tenth of the ack's time in SQLAlchemy, docs/architecture.md item 54)."""
    return status.in_([literal_column(f"'{value}'") for value in UNFINISHED])


BACKLOG = select(func.count()).select_from(InboxItem).where(_unfinished(InboxItem.status))


def _claimable() -> ColumnElement[bool]:
    """Pending, or claimed by a worker whose lease ran out (before ``:now``)."""
    return or_(
        InboxItem.status == InboxStatus.PENDING.value,
        and_(InboxItem.status == InboxStatus.CLAIMED.value, InboxItem.lease_until <= NOW),
    )


def _candidates() -> Select[tuple[int]]:
    """The rows a worker may claim at ``:now``, oldest first: any row of no incident, and the
    oldest unfinished row of an incident none of whose rows is being handled. Built once:
    the worker asks it many times a second."""
    older = aliased(InboxItem)
    first_of_incident = (
        select(func.min(older.id))
        .where(older.incident_id == InboxItem.incident_id, _unfinished(older.status))
        .scalar_subquery()
    )
    busy = select(older.incident_id).where(
        older.status == InboxStatus.CLAIMED.value,
        older.lease_until > NOW,
        older.incident_id.is_not(None),
    )
    return (
        select(InboxItem.id)
        .where(
            _claimable(),
            or_(
                InboxItem.incident_id.is_(None),
                and_(InboxItem.incident_id.not_in(busy), InboxItem.id == first_of_incident),
            ),
        )
        .order_by(InboxItem.id)
        .limit(8)
    )


CANDIDATES = _candidates()
ROW_COLUMNS = (
    "key", "source", "action", "incident_id", "actor", "accepted_at", "payload", "status",
    "attempts",
)  # fmt: skip


def _insert_below_mark(*, returning: bool) -> Insert:
    """The ack's insert of one row (:func:`_row`), made only while fewer than ``:high_water``
    rows are unfinished: the mark is checked by the statement that writes, so an ack costs
    one round trip (a separate count had cost a second one on every other ack)."""
    columns = InboxItem.__table__.c  # type: ignore[attr-defined]
    row = select(*(bindparam(name, type_=columns[name].type) for name in ROW_COLUMNS)).where(
        BACKLOG.scalar_subquery() < bindparam("high_water")
    )
    written = insert(InboxItem).from_select(list(ROW_COLUMNS), row)
    # RETURNING: whether a row was written (PostgreSQL's rowcount of INSERT ... SELECT is -1)
    return written.returning(InboxItem.id) if returning else written


INSERT_BELOW_MARK = _insert_below_mark(returning=True)
# SQLite holds a file's write lock until a statement's RETURNING rows are read, which
# happens in Python, after the thread gets the GIL (and, in a worker that yields, the CPU)
# back; without RETURNING it commits inside the statement, in C. So on SQLite the inbox's
# writes count rows instead, and a claim reads the row it took afterwards, taking no lock.
INSERT_BELOW_MARK_COUNTED = _insert_below_mark(returning=False)
CLAIM_COUNTED = (
    update(InboxItem)
    .where(InboxItem.id == bindparam("claim_id"), _claimable())
    .values(
        status=InboxStatus.CLAIMED.value,
        claimed_by=bindparam("claimer"),
        lease_until=bindparam("lease", type_=InboxItem.__table__.c.lease_until.type),  # type: ignore[attr-defined]
        attempts=InboxItem.attempts + 1,
    )
)
CLAIM = CLAIM_COUNTED.returning(*InboxItem.__table__.columns)  # type: ignore[attr-defined]
CLAIMED_ROW = select(*InboxItem.__table__.columns).where(  # type: ignore[attr-defined]
    InboxItem.id == bindparam("claim_id"), InboxItem.claimed_by == bindparam("claimer")
)


class Acceptance(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # the same request was recorded before (a Slack retry)
    FULL = "full"  # the backlog is over the high-water mark: not recorded
    UNAVAILABLE = "unavailable"  # the state database could not be written: not recorded

    @property
    def recorded(self) -> bool:
        return self in (Acceptance.RECORDED, Acceptance.DUPLICATE)


@dataclass(frozen=True)
class NewRequest:
    key: str
    source: str
    action: str
    actor: str
    incident_id: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)


class Inbox:
    def __init__(
        self,
        store: Store,
        *,
        high_water: int = 500,
        lease: timedelta = timedelta(minutes=2),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store.inbox_side
        self.high_water = high_water
        self.lease = lease
        self.clock = clock

    # ------------------------------------------------------------ the ack side
    def accept(self, request: NewRequest) -> Acceptance:
        """Record ``request``; never raises. One statement on the hot path of every ack: the
        insert, which checks the high-water mark itself (:data:`INSERT_BELOW_MARK`)."""
        row = _row(request, self.clock())
        for attempt in (1, 2):
            try:
                return self._accept(row)
            except IntegrityError:
                return Acceptance.DUPLICATE
            except DBAPIError as exc:
                if exc.connection_invalidated and attempt == 1:
                    continue  # a pooled connection the database dropped: once more, fresh
                log.warning("inbox write failed, request not recorded: %s", _short(exc))
            except SQLAlchemyError as exc:
                log.warning("inbox write failed, request not recorded: %s", _short(exc))
            break
        return Acceptance.UNAVAILABLE

    def _accept(self, row: dict[str, Any]) -> Acceptance:
        params = {**row, "high_water": self.high_water}
        if self.store.dialect == "sqlite":
            written = self.store.execute_once(INSERT_BELOW_MARK_COUNTED, params) == 1
        else:
            written = self.store.returning_once(INSERT_BELOW_MARK, params) is not None
        return Acceptance.RECORDED if written else Acceptance.FULL

    # ------------------------------------------------------------ the worker side
    def claim(self, worker_id: str) -> InboxItem | None:
        """The next row this worker may handle (oldest first, one per incident), or None.

        Plain statements, no ORM session: the worker asks many times a second. The read of
        candidates takes no lock (idle polling never takes SQLite's write lock); then a
        compare-and-set takes one (:meth:`_take`)."""
        now = self.clock()
        lease = now + self.lease
        with self.store.single_reads.connect() as conn:
            candidates = conn.execute(CANDIDATES, {"now": now}).scalars().all()
        for item_id in candidates:
            params = {"now": now, "claim_id": item_id, "claimer": worker_id, "lease": lease}
            taken = self._take(params)
            if taken is not None:
                return InboxItem(**taken._mapping)
        return None

    def _take(self, params: dict[str, Any]) -> Row[Any] | None:
        """The compare-and-set of :meth:`claim`: the row taken, or None (another worker was
        first). On SQLite without RETURNING (see :data:`INSERT_BELOW_MARK_COUNTED`)."""
        if self.store.dialect != "sqlite":
            return self.store.returning_once(CLAIM, params)
        if not self.store.execute_once(CLAIM_COUNTED, params):
            return None
        with self.store.single_reads.connect() as conn:
            return conn.execute(CLAIMED_ROW, params).first()

    def release_orphans(self, gone: Callable[[str], bool]) -> int:
        """Make rows claimed by workers that are ``gone`` (their process died) claimable now,
        instead of when their lease runs out."""
        now = self.clock()
        with self.store.read() as session:
            rows = session.execute(
                select(InboxItem.id, InboxItem.claimed_by).where(
                    InboxItem.status == InboxStatus.CLAIMED.value, InboxItem.lease_until > now
                )
            ).all()
        orphans = [row_id for row_id, owner in rows if owner and gone(owner)]
        if orphans:
            self.store.execute_once(
                update(InboxItem)
                .where(InboxItem.id.in_(orphans), InboxItem.status == InboxStatus.CLAIMED.value)
                .values(lease_until=now)
            )
        return len(orphans)

    def finish(self, item_id: int, status: InboxStatus, outcome: str = "") -> None:
        self.store.execute_once(
            update(InboxItem)
            .where(InboxItem.id == item_id)
            .values(
                status=status.value,
                finished_at=self.clock(),
                lease_until=None,
                outcome=redact(outcome)[:2000],
            )
        )

    def add_notice(self, request: NewRequest) -> None:
        """A row rollbot itself needs handled (e.g. an interruption to announce): never refused
        for the high-water mark, recorded once per key; errors are the caller's."""
        with contextlib.suppress(IntegrityError):  # noticed before
            self.store.execute_once(insert(InboxItem), _row(request, self.clock()))

    def renew(self, item_id: int, worker_id: str) -> bool:
        """Extend this worker's lease before trying a row again; False if it is not ours now."""
        return bool(
            self.store.execute_once(
                update(InboxItem)
                .where(
                    InboxItem.id == item_id,
                    InboxItem.status == InboxStatus.CLAIMED.value,
                    InboxItem.claimed_by == worker_id,
                )
                .values(lease_until=self.clock() + self.lease)
            )
        )

    # ------------------------------------------------------------ upkeep and reporting
    def counts(self) -> dict[str, int]:
        with self.store.read() as session:
            rows = session.execute(
                select(InboxItem.status, func.count()).group_by(InboxItem.status)
            ).all()
        return {status: int(n) for status, n in rows}


def _row(request: NewRequest, now: datetime) -> dict[str, Any]:
    return {
        "key": request.key[:200],
        "source": request.source,
        "action": request.action,
        "incident_id": request.incident_id,
        "actor": request.actor,
        "accepted_at": now,
        "payload": request.payload,
        "status": InboxStatus.PENDING.value,
        "attempts": 0,
    }


def _short(exc: BaseException) -> str:
    return redact(str(exc)).splitlines()[0][:300] if str(exc) else type(exc).__name__


def interruption_notice(step: Step) -> NewRequest:
    """The inbox row telling people a step was interrupted (one per interrupted attempt)."""
    return NewRequest(
        key=f"rollbot:interrupted:{step.id}:{step.attempt}",
        source="rollbot",
        action="step_interrupted",
        actor="rollbot",
        incident_id=step.incident_id,
        payload={"step_id": step.id},
    )
