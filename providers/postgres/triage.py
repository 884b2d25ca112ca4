"""Stuck-migration triage: who is running, who waits on whom, and ending one backend safely.

The runbook's "migration hangs" scenario is ``SELECT pid, now() - query_start,
query FROM pg_stat_activity WHERE state = 'active'`` followed by
``pg_terminate_backend(PID)`` with a PID typed by hand. Two traps there: the
usual culprit of a hung ``ALTER TABLE`` is a session *idle in transaction*
(not "active", so the runbook's query hides it), and a mistyped PID ends an
innocent backend. So: the listing shows every non-idle backend of the
database with what it waits for and who blocks it (``pg_blocking_pids``); the
roots of the blocking tree are the candidates to end; and cancel/terminate
accept only an integer PID from the listing, never rollbot's own connection,
re-check that the PID still belongs to the same backend, and confirm the
effect afterwards.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import psycopg

from bot.errors import RollbotError
from bot.redact import redact
from providers.postgres.conn import connect, describe

QUERY_WIDTH = 200
Action = Literal["cancel", "terminate"]
_PASSWORD_LITERAL = re.compile(r"(PASSWORD\s+)'(?:[^']|'')*'", re.IGNORECASE)


def _clean_query(text: str | None, width: int = QUERY_WIDTH) -> str:
    """One line, truncated, with password literals and known secrets masked."""
    flat = " ".join((text or "").split())
    flat = redact(_PASSWORD_LITERAL.sub(r"\1'***'", flat))
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@dataclass(frozen=True)
class Lock:
    """A lock a backend holds or waits for (``granted=False`` is a wait)."""

    locktype: str
    target: str  # relation name, "transaction 1234", "advisory 1:2", ...
    mode: str
    granted: bool

    def __str__(self) -> str:
        return f"{'holds' if self.granted else 'WAITS for'} {self.mode} on {self.target}"


@dataclass(frozen=True)
class Backend:
    pid: int
    user: str | None
    application: str
    client: str | None
    state: str
    wait_event: str | None  # "Lock:relation", "Client:ClientRead", ...
    backend_start: datetime
    query_start: datetime | None
    query_seconds: float | None  # since the current (or last) query started
    xact_seconds: float | None  # since its transaction started
    query: str
    blocked_by: tuple[int, ...] = ()
    locks: tuple[Lock, ...] = ()

    @property
    def waits(self) -> list[Lock]:
        return [lock for lock in self.locks if not lock.granted]

    def summary(self) -> str:
        # An idle session "waits" for its client to send something: not worth showing.
        shown = self.wait_event and not self.wait_event.startswith("Client:")
        wait = f" waiting on {self.wait_event}" if shown else ""
        return (
            f"pid {self.pid} [{self.state}{wait}] {_duration(self.query_seconds)} "
            f"(transaction {_duration(self.xact_seconds)}) {self.user or '?'}"
            f"/{self.application or '-'}: {self.query or '(no query)'}"
        )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass(frozen=True)
class ActivityListing:
    """A snapshot of one database's backends; the only PIDs cancel/terminate accept."""

    database: str
    own_pid: int
    taken_at: datetime
    backends: tuple[Backend, ...] = field(default_factory=tuple)

    @property
    def pids(self) -> list[int]:
        return [b.pid for b in self.backends]

    def get(self, pid: int) -> Backend | None:
        return next((b for b in self.backends if b.pid == pid), None)

    def blocked_by_me(self, pid: int) -> list[Backend]:
        return [b for b in self.backends if pid in b.blocked_by]

    @property
    def roots(self) -> list[Backend]:
        """Backends that block others and wait for nobody listed: the ones to consider ending."""
        listed = set(self.pids)
        return [
            b
            for b in self.backends
            if self.blocked_by_me(b.pid) and not (set(b.blocked_by) & listed)
        ]

    def tree_lines(self) -> list[str]:
        """The blocking tree, one backend per line, indented under what blocks it."""
        out: list[str] = []
        seen: set[int] = set()

        def walk(b: Backend, depth: int) -> None:
            prefix = "  " * depth + ("└─ " if depth else "")
            if b.pid in seen:
                out.append(f"{prefix}pid {b.pid} (cycle: already shown above)")
                return
            seen.add(b.pid)
            out.append(prefix + b.summary())
            for lock in b.locks:
                out.append("  " * (depth + 1) + f"   {lock}")
            for child in self.blocked_by_me(b.pid):
                walk(child, depth + 1)

        for root in self.roots:
            walk(root, 0)
        # Blocking cycles have no root (the deadlock detector normally breaks them).
        for b in self.backends:
            if b.pid not in seen and b.blocked_by:
                walk(b, 0)
        return out

    def lines(self) -> list[str]:
        out = [
            f"{len(self.backends)} non-idle backend(s) on {self.database} "
            f"at {self.taken_at:%Y-%m-%d %H:%M:%S %Z} (rollbot's own pid {self.own_pid} not listed)"
        ]
        out += ["  " + b.summary() for b in self.backends]
        tree = self.tree_lines()
        if tree:
            out.append("blocking tree (roots first; a root is the one to consider ending):")
            out += ["  " + line for line in tree]
        else:
            out.append("no backend is blocked by another")
        return out


_ACTIVITY_SQL = """
WITH here AS (
    SELECT a.*, pg_blocking_pids(a.pid) AS blockers
    FROM pg_stat_activity a
    WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
      AND a.datname = current_database()
)
SELECT pid, usename, application_name, host(client_addr), state,
       wait_event_type || ':' || wait_event, backend_start, query_start,
       extract(epoch FROM clock_timestamp() - query_start),
       extract(epoch FROM clock_timestamp() - xact_start),
       query, blockers
FROM here
WHERE state IS DISTINCT FROM 'idle'
   OR pid IN (SELECT unnest(blockers) FROM here)
ORDER BY xact_start NULLS LAST, pid
"""

_LOCKS_SQL = """
SELECT l.pid, l.locktype,
       CASE
         WHEN l.relation IS NOT NULL THEN l.relation::regclass::text
         WHEN l.locktype = 'transactionid' THEN 'transaction ' || l.transactionid
         WHEN l.locktype = 'advisory' THEN 'advisory ' || l.classid || ':' || l.objid
         ELSE l.locktype
       END,
       l.mode, l.granted
FROM pg_locks l
WHERE l.pid = ANY(%s) AND l.locktype <> 'virtualxid'
  AND (NOT l.granted OR EXISTS (
        SELECT 1 FROM pg_locks w
        WHERE NOT w.granted AND w.locktype = l.locktype
          AND w.database IS NOT DISTINCT FROM l.database
          AND w.relation IS NOT DISTINCT FROM l.relation
          AND w.transactionid::text IS NOT DISTINCT FROM l.transactionid::text
          AND w.classid IS NOT DISTINCT FROM l.classid
          AND w.objid IS NOT DISTINCT FROM l.objid))
ORDER BY l.pid, l.granted, 3
"""


def list_activity(conn: psycopg.Connection) -> ActivityListing:
    """Non-idle backends of ``conn``'s database (plus idle ones that block someone), with locks.

    Only lock waits and the granted locks that others wait for are shown: an
    ``ALTER TABLE`` holds dozens of uninteresting locks.
    """
    own_pid, now = conn.execute("SELECT pg_backend_pid(), clock_timestamp()").fetchone()
    rows = conn.execute(_ACTIVITY_SQL).fetchall()
    pids = [r[0] for r in rows]
    locks: dict[int, list[Lock]] = {pid: [] for pid in pids}
    for pid, locktype, target, mode, granted in conn.execute(_LOCKS_SQL, (pids,)):
        locks[pid].append(Lock(locktype, target, mode, granted))
    backends = tuple(
        Backend(
            pid=pid,
            user=user,
            application=app or "",
            client=client,
            state=state or "unknown",
            wait_event=wait,
            backend_start=started,
            query_start=q_start,
            query_seconds=None if q_secs is None else float(q_secs),
            xact_seconds=None if x_secs is None else float(x_secs),
            query=_clean_query(query),
            blocked_by=tuple(blockers or ()),
            locks=tuple(locks[pid]),
        )
        for pid, user, app, client, state, wait, started, q_start, q_secs, x_secs, query, blockers in (
            rows
        )
    )
    if not conn.autocommit:
        conn.rollback()  # do not keep a snapshot (or locks) open while a person decides
    return ActivityListing(
        database=conn.info.dbname, own_pid=int(own_pid), taken_at=now, backends=backends
    )


def _checked_pid(pid: object, listing: ActivityListing) -> int:
    """The PID as an int if it is one the listing shows; otherwise a clear refusal."""
    valid = ", ".join(str(p) for p in listing.pids) or "none (no backend is listed)"
    if isinstance(pid, bool) or not isinstance(pid, int | str):
        raise RollbotError(f"PID must be an integer from the listing; valid PIDs: {valid}")
    text = str(pid).strip()
    if not re.fullmatch(r"[0-9]{1,10}", text):
        raise RollbotError(f"PID {text[:20]!r} is not an integer; valid PIDs: {valid}")
    number = int(text)
    if number == listing.own_pid:
        raise RollbotError(f"PID {number} is rollbot's own connection; refusing to end it")
    if number not in listing.pids:
        raise RollbotError(f"PID {number} is not in the current listing; valid PIDs: {valid}")
    return number


def plan(listing: ActivityListing, pid: object, action: Action) -> str:
    """What ending this backend does, for a person to approve (validates the PID)."""
    number = _checked_pid(pid, listing)
    b = listing.get(number)
    assert b is not None
    victims = listing.blocked_by_me(number)
    lines = [f"{action} pid {number} on {listing.database}: {b.summary()}"]
    in_xact = b.xact_seconds is not None
    if action == "cancel":
        if b.state == "active":
            lines.append(
                "pg_cancel_backend: its running statement is cancelled; "
                + (
                    "its transaction is then aborted and rolled back when the client ends it; "
                    "locks taken in the transaction stay held until then"
                    if in_xact
                    else "the session stays connected"
                )
            )
        else:
            lines.append(
                f"pg_cancel_backend: it is {b.state}, so there is no running statement to cancel; "
                "this will have no effect. Use terminate to end its transaction and release "
                "its locks"
            )
    else:
        lines.append(
            "pg_terminate_backend: the session is disconnected; "
            + (
                f"its open transaction ({_duration(b.xact_seconds)} old) is ROLLED BACK "
                "(its uncommitted changes are lost) and all its locks are released"
                if in_xact
                else "it has no open transaction, nothing is rolled back"
            )
        )
    if victims:
        lines.append("unblocks: " + ", ".join(f"pid {v.pid} ({v.query[:60]})" for v in victims))
    return "\n".join(lines)


@dataclass(frozen=True)
class ActionResult:
    action: Action
    pid: int
    signalled: bool
    confirmed: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.action} pid {self.pid}: {self.detail}"


def _current(conn: psycopg.Connection, pid: int) -> tuple | None:
    return conn.execute(
        "SELECT backend_start, state, query_start FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()


def _poll(timeout: float) -> Iterator[None]:
    deadline = time.monotonic() + timeout
    while True:
        yield
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)


def _end_backend(
    url: str, pid: object, listing: ActivityListing, action: Action, timeout: float
) -> ActionResult:
    number = _checked_pid(pid, listing)
    before = listing.get(number)
    assert before is not None
    with connect(url, autocommit=True) as conn:
        own = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        if number == own:
            raise RollbotError(f"PID {number} is rollbot's own connection; refusing to end it")
        now = _current(conn, number)
        if now is None:
            return ActionResult(action, number, False, True, "already gone; nothing to do")
        if now[0] != before.backend_start:
            raise RollbotError(
                f"PID {number} now belongs to another session than the one listed; list again"
            )
        function = "pg_cancel_backend" if action == "cancel" else "pg_terminate_backend"
        try:
            signalled = bool(conn.execute(f"SELECT {function}(%s)", (number,)).fetchone()[0])
        except psycopg.Error as exc:
            reason = redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
            raise RollbotError(
                f"{function}({number}) failed on {describe(url)}: {reason}"
            ) from None
        if not signalled:
            return ActionResult(action, number, False, False, f"{function} returned false")
        for _ in _poll(timeout):
            now = _current(conn, number)
            if now is None or now[0] != before.backend_start:
                return ActionResult(action, number, True, True, "backend is gone")
            if action == "cancel":
                if before.state != "active":
                    break  # nothing was running: a cancel cannot have had an effect
                if now[1] != "active" or now[2] != before.query_start:
                    return ActionResult(
                        action, number, True, True, f"statement cancelled (now {now[1]})"
                    )
        still = "still connected" if action == "terminate" else f"still {now[1]}"
        return ActionResult(
            action,
            number,
            True,
            False,
            f"signal sent but not confirmed after {timeout:g}s: {still}",
        )


def cancel(
    url: str, pid: object, listing: ActivityListing, *, timeout: float = 10.0
) -> ActionResult:
    """``pg_cancel_backend`` a listed PID and confirm its statement stopped."""
    return _end_backend(url, pid, listing, "cancel", timeout)


def terminate(
    url: str, pid: object, listing: ActivityListing, *, timeout: float = 10.0
) -> ActionResult:
    """``pg_terminate_backend`` a listed PID and confirm the backend is gone."""
    return _end_backend(url, pid, listing, "terminate", timeout)


def activity(url: str) -> ActivityListing:
    """Open a connection to ``url`` and list its activity."""
    with connect(url, autocommit=True) as conn:
        return list_activity(conn)
