"""Waiting for a restored instance or cluster to become ``available``, with progress.

Our own poll of ``describe_db_*`` rather than boto3's waiter: each poll reports the status
in the thread and refreshes the step's lease, and the wait is bounded by the config. A
restart polls again by name (recorded before the wait), so waiting is always safe to repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bot.errors import ProviderError
from bot.steps import StepContext
from providers.rds.access import rds_config

# Statuses an instance or cluster does not leave by itself: waiting longer will not help.
STUCK = {
    "failed",
    "incompatible-restore",
    "incompatible-parameters",
    "incompatible-network",
    "incompatible-option-group",
    "storage-full",
    "inaccessible-encryption-credentials",
    "restore-error",
    "deleting",
    "stopped",
}


def wait_available(
    ctx: StepContext,
    what: str,
    describe: Callable[[], dict[str, Any] | None],
    status_key: str,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll ``describe`` until ``status_key`` is ``available``; the last description back."""
    cfg = rds_config(ctx.environment)
    started = time.monotonic()
    deadline = started + cfg.max_wait_minutes * 60
    last = None
    while True:
        described = describe()
        if described is None:
            raise ProviderError(
                f"{what} does not exist (any more): it was requested, so check the RDS "
                "console before retrying; rollbot does not send the restore again by itself"
            )
        status = str(described.get(status_key) or "unknown")
        minutes = (time.monotonic() - started) / 60
        if status != last:
            ctx.report(f"{what}: {status} ({minutes:.0f} min)")
            last = status
        ctx.heartbeat()
        if status == "available":
            return described
        if status in STUCK:
            raise ProviderError(f"{what} is {status}: it will not become available by itself")
        if time.monotonic() >= deadline:
            raise ProviderError(
                f"{what} is still {status} after {cfg.max_wait_minutes:g} min; rollbot stopped "
                "waiting (RDS goes on): check the console, then retry, skip or abandon"
            )
        sleep(cfg.poll_seconds)
