"""Running the durable timers (``bot.timers``) in a process: one APScheduler interval job.

APScheduler keeps only that job, in memory: its job stores must never be shared by several
schedulers, and the timers themselves are rows any process may fire. Every process that
runs timers starts its own scheduler; no leader is needed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from bot.models import Timer
from bot.outbox import Deliverer
from bot.redact import redact
from bot.service import Rollbot
from bot.timer_kinds import ensure_cron_timers
from bot.timers import sweep
from handlers.runtime import Runtime

log = logging.getLogger(__name__)
JOB_ID = "rollbot-timer-sweep"


def ensure_cron_reminders(bot: Rollbot) -> list[Timer]:
    """Create the next drill / runbook-review timer unless one is pending (each schedules
    the following occurrence when it fires, so this matters at first start and after the
    cron line changed)."""
    with bot.store.session() as session:
        return ensure_cron_timers(session, bot)


def start_timer_sweep(runtime: Runtime, deliverer: Deliverer | None = None) -> BackgroundScheduler:
    """A started scheduler (daemon thread) sweeping every ``timer_sweep_seconds``, the first
    time at once (a timer missed while the process was down fires late, not never).
    ``deliverer``: also deliver the notices due after each sweep."""
    try:
        ensure_cron_reminders(runtime.bot)
    except Exception as exc:  # the sweep still runs; the next start tries again
        log.warning("cron reminders not scheduled: %s", redact(exc))
    # APScheduler logs each run at INFO; every few seconds, that is noise.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    scheduler = BackgroundScheduler(
        daemon=True, timezone=UTC, executors={"default": ThreadPoolExecutor(1)}
    )
    scheduler.add_job(
        _sweep_job,
        "interval",
        seconds=runtime.settings.reminders.timer_sweep_seconds,
        args=(runtime.bot, deliverer),
        id=JOB_ID,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC),
    )
    scheduler.start()
    return scheduler


def _sweep_job(bot: Rollbot, deliverer: Deliverer | None) -> None:
    """One sweep; an error is logged and swallowed so the job keeps running."""
    try:
        fired = sweep(bot)
        if fired:
            log.info("%d timer(s) fired", fired)
        if deliverer is not None:
            deliverer.deliver_due()
    except Exception as exc:
        log.warning("timer sweep failed (next one in a few seconds): %s", redact(exc))
