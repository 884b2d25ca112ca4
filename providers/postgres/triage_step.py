"""The stuck-migration step kind: end the session at the root of a blocking tree.

Why a step (not just ``rollbot triage``): in an incident the blocker is chosen
when the plan is made and that choice is what people approve. ``pin()`` picks
the root blocker of the longest-waiting blocked query and records its PID *and*
its backend start time, so if that session ends and the PID is reused by an
innocent one before the step runs, the step refuses instead of ending it.
No safety snapshot: ``pg_dump`` would wait on the same lock the migration waits on,
and ending a session changes no committed data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from bot.errors import RollbotError
from bot.steps import Plan, StepContext, StepResult, register_step
from providers.postgres.conn import describe, plan_connection
from providers.postgres.triage import (
    ActivityListing,
    Backend,
    activity,
    list_activity,
    terminate,
)
from providers.postgres.triage import plan as triage_plan


class NoBlockerError(RollbotError):
    """Nothing is blocked: there is no session to end."""


def longest_waiting(listing: ActivityListing) -> Backend | None:
    """The blocked backend that has waited longest (its current statement is oldest)."""
    blocked = [b for b in listing.backends if b.blocked_by]
    return max(blocked, key=lambda b: b.query_seconds or 0.0, default=None)


def root_blocker(listing: ActivityListing, waiting: Backend) -> Backend:
    """Follow ``blocked_by`` from ``waiting`` up to a listed backend that waits for nobody listed.

    A blocking cycle (the deadlock detector normally breaks them first) ends at the
    first backend seen twice.
    """
    current, seen = waiting, {waiting.pid}
    while True:
        blockers = [b for pid in current.blocked_by if (b := listing.get(pid)) is not None]
        if not blockers:
            if current is waiting:
                raise NoBlockerError(
                    f"pid {waiting.pid} waits for a backend that is not listed (another "
                    "database or a background process); end it by hand after checking"
                )
            return current
        # The blocker that has held its transaction longest is the one everything queues behind.
        nxt = max(blockers, key=lambda b: b.xact_seconds or 0.0)
        if nxt.pid in seen:
            return nxt
        seen.add(nxt.pid)
        current = nxt


def _parse_start(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise RollbotError(f"backend start {value!r} is not an ISO time") from None


@register_step
@dataclass
class TerminateBlockerStep:
    """``pg_terminate_backend`` the root blocker pinned at plan time, then confirm."""

    pid: int | None = None
    backend_start: str | None = None  # ISO; refuses a reused PID
    timeout_seconds: float = 10.0
    kind: ClassVar[str] = "postgres.terminate_blocker"
    destructive: ClassVar[bool] = True
    safety_snapshot: ClassVar[str] = "not_applicable"

    def _listing(self, ctx: StepContext) -> ActivityListing:
        with plan_connection(ctx) as conn:
            return list_activity(conn)

    def _choose(self, listing: ActivityListing) -> Backend:
        if self.pid is None:
            waiting = longest_waiting(listing)
            if waiting is None:
                raise NoBlockerError(
                    f"no query is blocked by another session on {listing.database}; "
                    "nothing to end (the migration may be slow, not blocked)"
                )
            return root_blocker(listing, waiting)
        backend = listing.get(int(self.pid))
        if backend is None:
            raise NoBlockerError(f"pid {self.pid} is no longer listed on {listing.database}")
        if self.backend_start and backend.backend_start != _parse_start(self.backend_start):
            raise RollbotError(
                f"pid {self.pid} now belongs to another session (started "
                f"{backend.backend_start:%H:%M:%S}, the planned one {self.backend_start}); "
                "refusing; choose the method again to re-plan"
            )
        return backend

    def pin(self, ctx: StepContext) -> dict[str, Any]:
        """The root blocker now: its PID and backend start, for the plan and the run alike."""
        root = self._choose(self._listing(ctx))
        return {
            "pid": root.pid,
            "backend_start": root.backend_start.isoformat(),
            "timeout_seconds": self.timeout_seconds,
        }

    def plan(self, ctx: StepContext) -> Plan:
        env = ctx.environment
        target = f"{env.name} ({env.tier}): {describe(env.database_url())}"
        listing = self._listing(ctx)
        try:
            root = self._choose(listing)
        except NoBlockerError as exc:
            return Plan(
                title="End the session blocking the migration",
                target=target,
                action=f"nothing to end now: {exc}",
                data_loss="none",
                details=tuple(listing.lines()),
            )
        effect = triage_plan(listing, root.pid, "terminate").splitlines()
        in_xact = root.xact_seconds is not None
        return Plan(
            title=f"End the session blocking the migration (pid {root.pid})",
            target=target,
            action=(
                f"pg_terminate_backend({root.pid}) (session started "
                f"{root.backend_start:%Y-%m-%d %H:%M:%S %Z}; refused if the PID was reused), "
                "then confirm it is gone and the waiting queries proceed"
            ),
            data_loss=(
                "the blocking transaction's uncommitted work is rolled back"
                if in_xact
                else "none: the blocker has no open transaction"
            ),
            details=(*effect[1:], *listing.lines()[1:]),
        )

    def run(self, ctx: StepContext) -> StepResult:
        url = ctx.environment.database_url()
        if self.pid is None:
            raise RollbotError("the blocker was not pinned when the plan was made; re-plan")
        listing = activity(url)
        if listing.get(int(self.pid)) is None:
            return StepResult(
                True,
                f"pid {self.pid} had already ended; nothing to do",
                {"pid": self.pid, "terminated": False},
            )
        root = self._choose(listing)
        ctx.report("\n".join(listing.lines()))
        ctx.audit(
            "provider",
            f"Terminating blocking session pid {root.pid}",
            {"pid": root.pid, "query": root.query, "state": root.state},
        )
        unblocks = [b.pid for b in listing.blocked_by_me(root.pid)]
        result = terminate(url, root.pid, listing, timeout=self.timeout_seconds)
        if not result.confirmed:
            return StepResult(False, str(result), {"pid": root.pid, "terminated": False})
        still = self._still_blocked(url, unblocks)
        ctx.report(str(result))
        summary = f"terminated pid {root.pid} ({result.detail})"
        if still:
            summary += f"; still blocked by others: {', '.join(map(str, still))}"
        return StepResult(
            True,
            summary,
            {"pid": root.pid, "terminated": True, "unblocked": unblocks, "still_blocked": still},
        )

    def _still_blocked(self, url: str, pids: list[int], wait: float = 2.0) -> list[int]:
        """Which of the queries it blocked still wait on a lock after a short grace period."""
        deadline = time.monotonic() + wait
        while True:
            listing = activity(url)
            still = [p for p in pids if (b := listing.get(p)) is not None and b.blocked_by]
            if not still or time.monotonic() >= deadline:
                return still
            time.sleep(0.05)
