"""``/readyz``: may this replica take Slack's requests? (``/healthz`` only says it runs.)

Kubernetes restarts a pod whose liveness probe fails and stops routing to one
whose readiness probe fails. A served app that cannot record a request (state
database unreachable), runs against a schema older than its code (migrations
not at head), or has no worker doing the recorded work should leave the load
balancer until that passes, but must not be restarted for it: so these checks
live on ``/readyz``, and ``/healthz`` stays a static "the process answers".
Each check is a short phrase in the JSON body; the status is 200 or 503.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot.models import InboxItem
from bot.redact import redact
from bot.store import MIGRATIONS, Store
from handlers.rundir import worker_alive

OK = "ok"
WORKER_STALE_SECONDS = 20.0  # the worker's loop beats every second; this leaves a wide margin


def migration_heads() -> set[str]:
    """The Alembic heads this build of rollbot expects (read once, from its own files)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return set(ScriptDirectory.from_config(cfg).get_heads())


@dataclass
class Readiness:
    store: Store
    heartbeat: Path | None  # None: no worker is managed by this serve (``--no-worker``)
    heads: set[str]
    stale_after: float = WORKER_STALE_SECONDS

    def checks(self) -> dict[str, str]:
        found = {"state_database": OK, "migrations": OK, "worker": OK}
        try:
            current = self._retrying(self._versions)
        except SQLAlchemyError as exc:
            found["state_database"] = f"unreachable ({_short(exc)})"
            found["migrations"] = "unknown (state database unreachable)"
        else:
            if current != self.heads:
                found["migrations"] = (
                    f"at {', '.join(sorted(current)) or 'nothing'}, "
                    f"this build needs {', '.join(sorted(self.heads))}"
                )
            if self.store.inbox_side is not self.store:
                try:
                    self._retrying(self._inbox)
                except SQLAlchemyError as exc:
                    found["state_database"] = f"inbox unreachable ({_short(exc)})"
        if self.heartbeat is None:
            found["worker"] = "not managed here (--no-worker)"
        else:
            problem = worker_alive(self.heartbeat, self.stale_after)
            if problem:
                found["worker"] = problem
        return found

    def probe(self) -> tuple[int, str, bytes]:
        found = self.checks()
        ready = all(v == OK or v.startswith("not managed") for v in found.values())
        body = json.dumps({"ready": ready, "checks": found}).encode()
        return (200 if ready else 503), "application/json", body

    def _versions(self) -> set[str]:
        with self.store.single_reads.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            return {str(r) for r in rows}

    def _inbox(self) -> None:
        with self.store.inbox_side.single_reads.connect() as conn:
            conn.execute(select(InboxItem.id).limit(1)).all()

    @staticmethod
    def _retrying(read: Callable[[], object]) -> set[str]:
        """Once more on a pooled connection the database dropped (it was restarted)."""
        try:
            return read()  # type: ignore[return-value]
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            return read()  # type: ignore[return-value]


def _short(exc: BaseException) -> str:
    first = redact(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
    return f"{type(exc).__name__}: {first[0][:160]}" if first else type(exc).__name__
