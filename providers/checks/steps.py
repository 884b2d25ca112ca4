"""The step ``checks.post_rollback``: smoke checks at once, then the error-rate watch.

Appended by the core to every rollback plan whose environment configures
``[environments.NAME.checks]``. Non-destructive. A failed smoke check fails the step, so
the incident fails and people decide (retrying the step runs the checks again); the
watch starts only once the smoke checks passed. With an error-rate source, one reading
is taken now (the baseline, reported but not escalated) and the watch
(``providers.checks.watch``) is scheduled as a durable timer.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.audit import AuditTrail
from bot.errors import RollbotError
from bot.lifecycle import StepStatus
from bot.models import Incident, Step, utcnow
from bot.steps import Plan, StepContext, StepResult, register_step
from bot.store import Store
from providers.checks.error_rate import Reading, describe_source, read_error_rate
from providers.checks.smoke import CheckResult, check_health_url, run_smoke_command
from providers.checks.watch import start_watch

SHOWN_LINES = 20  # of the smoke command's output, under the result lines


class _Progress:
    """The step's progress text: every result line so far, then the command's tail."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.lines: list[str] = []
        self.tail: deque[str] = deque(maxlen=SHOWN_LINES)

    def result(self, line: str) -> None:
        self.lines.append(line)
        self.tail.clear()
        self._show()

    def output(self, line: str) -> None:
        self.tail.append(f"  | {line}")
        self._show()
        self.ctx.heartbeat()

    def _show(self) -> None:
        self.ctx.report("\n".join([*self.lines, *self.tail]))


@register_step
@dataclass
class PostRollbackChecks:
    """The runbook's "after a rollback: run smoke tests, monitor error rates"."""

    kind: ClassVar[str] = "checks.post_rollback"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        checks = ctx.environment.checks
        details = [_health_words(url, ctx) for url in checks.health_urls]
        if checks.smoke_command:
            details.append(
                f"smoke command `{checks.smoke_command}` in {ctx.environment.commands.workdir}: "
                f"exit 0 within {ctx.environment.commands.timeout_seconds} s"
            )
        if checks.has_error_rate_source():
            details.append(
                f"error rate from {describe_source(checks)}: a reading now, then every "
                f"{checks.every_minutes} min for {checks.watch_minutes} min; above "
                f"{checks.error_rate_threshold:g} escalates (devops in hours, on-call after)"
            )
        return Plan(
            title="Smoke checks, then watch the error rate",
            target=f"{ctx.environment.name} ({ctx.environment.tier})",
            action="read-only checks; a failed smoke check fails the incident for people to decide",
            estimated=f"up to {checks.timeout_seconds:g} s per URL, plus the smoke command",
            details=tuple(details),
        )

    def run(self, ctx: StepContext) -> StepResult:
        started = time.monotonic()
        progress = _Progress(ctx)
        results = _smoke(ctx, progress)
        data: dict[str, Any] = {"smoke_checks": [r.as_data() for r in results]}
        failed = [r for r in results if not r.ok]
        if failed:
            data["lines"] = progress.lines
            summary = "smoke check failed: " + "; ".join(f"{r.name} {r.detail}" for r in failed)
            return StepResult(False, summary[:1000], data)
        passed = f"{len(results)} smoke check(s) passed" if results else "no smoke checks"
        checks = ctx.environment.checks
        if not checks.has_error_rate_source():
            data["lines"] = progress.lines
            return StepResult(True, passed, data)
        reading = read_error_rate(checks)
        progress.result(reading.line())
        ctx.audit("error_rate", f"INC-{ctx.incident_id} {reading.line()}", reading.as_data())
        watch = _schedule_watch(ctx, reading, time.monotonic() - started)
        progress.result(watch["said"])
        data.update(lines=progress.lines, error_rate=reading.as_data(), watch=watch)
        return StepResult(True, f"{passed}; {reading.line()}; {watch['said']}", data)


def _health_words(url: str, ctx: StepContext) -> str:
    checks = ctx.environment.checks
    expect = f" containing {checks.health_expect!r}" if checks.health_expect else ""
    return f"GET {url}: 2xx within {checks.timeout_seconds:g} s{expect}"


def _smoke(ctx: StepContext, progress: _Progress) -> list[CheckResult]:
    """Every configured smoke check, each reported and audited as it finishes."""
    checks = ctx.environment.checks
    results = []
    for url in checks.health_urls:
        results.append(check_health_url(url, checks.timeout_seconds, checks.health_expect))
        _record(ctx, progress, results[-1])
    if checks.smoke_command:
        target = ctx.declared_target()
        results.append(
            run_smoke_command(ctx.environment, checks.smoke_command, target, progress.output)
        )
        _record(ctx, progress, results[-1])
    return results


def _record(ctx: StepContext, progress: _Progress, result: CheckResult) -> None:
    progress.result(result.line())
    ctx.audit("smoke_check", f"INC-{ctx.incident_id} smoke check {result.line()}", result.as_data())


def _schedule_watch(ctx: StepContext, baseline: Reading, elapsed: float) -> dict[str, Any]:
    """The watch's first timer, with its start audited, in one transaction of the state
    database (a step has no session of its own: it opens the store the settings name)."""
    store = Store(ctx.settings.database_url, own_inbox=False)
    try:
        with store.session() as session:
            incident = session.get(Incident, ctx.incident_id)
            if incident is None:
                raise RollbotError(f"INC-{ctx.incident_id} is not in rollbot's state database")
            started = _bot_now(session, ctx.incident_id, elapsed)
            audit = AuditTrail(ctx.settings.audit_log)
            timer = start_watch(session, audit, incident, ctx.environment, started, baseline)
            payload = dict(timer.payload)
            first = timer.due_at
    finally:
        store.dispose()
    return {
        "timer": timer.id,
        "first_at": first.isoformat(),
        "ends_at": payload["ends_at"],
        "said": (
            f"watching the error rate every {payload['every_minutes']} min until "
            f"{datetime.fromisoformat(payload['ends_at']):%H:%M} UTC (first reading {first:%H:%M})"
        ),
    }


def _bot_now(session: Session, incident_id: int, elapsed: float) -> datetime:
    """Now by the bot's clock: when the executor (which stamps it with that clock) claimed
    this step, plus how long it has run; the wall clock if the step runs outside one."""
    started_at = session.scalars(
        select(Step.started_at)
        .where(
            Step.incident_id == incident_id,
            Step.kind == PostRollbackChecks.kind,
            Step.status == StepStatus.RUNNING.value,
        )
        .order_by(Step.seq.desc())
    ).first()
    if started_at is None:
        return utcnow()
    return started_at + timedelta(seconds=elapsed)
