"""The restored copy as the steps after the restore see it: its declared target, and the
migrations head it holds (what the verify then expects, not the journal's newest)."""

from __future__ import annotations

import logging
from typing import Any

from bot.errors import RollbotError
from bot.steps import DatabaseTarget, StepContext
from providers.rds.access import connection_url, reachable_url

log = logging.getLogger(__name__)


def target_of(ref: dict[str, str], endpoint: tuple[str, int], *, aurora: bool) -> DatabaseTarget:
    """Where the database lives now; ``ref`` holds ids and the endpoint, never a secret."""
    host, port = endpoint
    name = f"Aurora cluster {ref['cluster_id']}" if aurora else f"RDS instance {ref['instance_id']}"
    return DatabaseTarget(f"{name} ({host}:{port})", {**ref, "host": host, "port": str(port)})


def migrations_head_at(ctx: StepContext, target: DatabaseTarget) -> dict[str, Any] | None:
    """The newest migrations row in the restored copy; None (and a line in the thread) when
    rollbot cannot reach it, so the verify step reports that instead of guessing."""
    import psycopg

    from providers.postgres.conn import connect
    from providers.postgres.snapshot import migrations_head

    env = ctx.environment
    try:
        url = reachable_url(env, connection_url(env, target))
        with connect(url) as conn:
            return migrations_head(conn, env.migrations_table)
    except (RollbotError, psycopg.Error) as exc:
        ctx.report(f"could not read the migrations head of {target.label}: {exc}")
        log.info("migrations head of %s not read: %s", target.label, exc)
        return None
