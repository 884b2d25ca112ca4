"""``rollbot drill --env NAME --allow-cost`` on a managed service that restores into a NEW
instance (RDS, Aurora, Cloud SQL): the runbook's PITR, end to end, into a throwaway copy.

Why through the incident core: the drill practises what an on-call person would run
(plan, approvals by ``drill-approver``, the executor, the verify), on a copy of the
environment (``<env>-drill``) without team commands, ``[deploy]`` or ``[checks]``: a drill
never moves or probes the real app. The restore goes to the latest restorable time, into
a new instance the restore step names and declares; the verify runs there. That instance
is billable, so it is deleted at the end, also when a step failed, and the drill waits
until it is gone; one that could not be deleted is a leftover and fails the drill.

Nothing here names a provider: the environment's provider (``bot.methods.provider_for``)
supplies ``drill_source``, ``drill_options`` and ``delete_restored``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.config import (
    ApprovalsConfig,
    ChecksConfig,
    CommandsConfig,
    DeployConfig,
    EnvironmentConfig,
    Settings,
)
from bot.errors import RollbotError
from bot.methods import provider_for
from bot.redact import redact
from bot.runbook import RUNBOOK
from bot.steps import DatabaseTarget
from handlers.drill.runner import APPROVER, REQUESTER, Drill, DrillOptions, DrillResult, timed
from handlers.drill.timing import MethodOutcome, StepTiming
from handlers.runtime import Runtime, start_runtime

Echo = Callable[[str], None]
METHOD = "pitr"
TITLE = "Point-in-time restore into a new instance (throwaway, deleted)"
# PITR is offered in production only ("Data corruption?"): the drill's incident walks there.
TIER, ANSWERS = "production", ["data_corruption"]
NEEDS = ("drill_source", "drill_options", "delete_restored")


@dataclass
class ManagedDrillResult(DrillResult):
    """A drill result whose clean-up counts: an instance left behind fails the drill."""

    leftovers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return super().ok and not self.leftovers


def drill_provider(env: EnvironmentConfig) -> Any:
    """The environment's provider, if it can run this drill; else one clear line."""
    provider = provider_for(env)
    if not all(hasattr(provider, name) for name in NEEDS):
        raise RollbotError(
            f"environment {env.name!r} uses provider {env.provider!r}, which cannot restore "
            "into a new instance: `rollbot drill --env` does not drill it"
        )
    return provider


def cost_refusal(env: EnvironmentConfig) -> str:
    """Why the drill needs ``--allow-cost``; no API is called to say it."""
    source = drill_provider(env).drill_source(env)
    return (
        f"this drill restores {source} into a new billable instance and deletes it "
        "afterwards; pass --allow-cost to run it"
    )


def restore_step(steps: list[Any]) -> Any | None:
    """The plan's restore: its one destructive step (PITR into a new instance)."""
    return next((s for s in sorted(steps, key=lambda s: s.seq) if s.destructive), None)


class ManagedDrill:
    def __init__(self, env: EnvironmentConfig, output: Path, echo: Echo) -> None:
        self.env = env
        self.provider = drill_provider(env)
        self.output = output
        self.echo = echo
        self.result = ManagedDrillResult(started_at=datetime.now(UTC), output=output)
        self.runtime: Runtime | None = None
        self.core = Drill(DrillOptions(output=output), echo)  # runs the incident
        self.core.result = self.result
        self._tmp = Path(tempfile.mkdtemp(prefix="rollbot-managed-drill-"))
        self.drill_env = env.model_copy(
            update={
                "name": f"{env.name}-drill",
                "tier": TIER,
                "backups": str(self._tmp / "backups"),
                "commands": CommandsConfig(),
                "deploy": DeployConfig(),
                "checks": ChecksConfig(),
            }
        )

    def start_core(self) -> None:
        source = self.provider.drill_source(self.env)
        self.result.server_where = f"restored from {source}; deleted after the drill"
        self.result.migrations_folder = str(self.env.migrations_dir or "none configured")
        self.result.problematic = "none (a restore drill)"
        self.result.notes.append(
            f"managed drill of {self.env.name} ({self.env.tier}) as {self.drill_env.name}: "
            f"{source} is restored into a new instance, verified there and deleted; the "
            "source is only read, and no repoint, webhook or check runs"
        )
        if self.env.tier != TIER:
            self.result.notes.append(
                f"the runbook offers PITR only in production: the incident runs with tier {TIER}"
            )
        state = self.output / "drill-state.db"
        state.unlink(missing_ok=True)
        settings = Settings().model_copy(
            update={
                "database_url": f"sqlite:///{state}",
                "audit_log": self.output / "audit.log",
                "approvals": ApprovalsConfig(users=(REQUESTER, APPROVER)),
                "environments": {self.drill_env.name: self.drill_env},
                "source": f"rollbot drill --env {self.env.name}",
            }
        )
        with timed(self.result.setup, "start the incident core"):
            self.runtime = start_runtime(settings)
        self.core.runtime = self.runtime

    def outcome(self) -> MethodOutcome:
        return MethodOutcome(
            key=METHOD,
            title=TITLE,
            method_id=METHOD,
            environment=self.drill_env.name,
            tier=TIER,
            expected_loss=RUNBOOK.method(METHOD).data_loss or "none",
        )

    # -------------------------------------------------------------- the method
    def practise(self, outcome: MethodOutcome) -> None:
        """The incident, then (always) the deletion of what its restore created."""
        try:
            with timed(outcome.setup, "the latest restorable time (read from the service)"):
                options = self.provider.drill_options(self.drill_env)
            done = self.core.incident(outcome, ANSWERS, options)
            self._check(outcome, done.steps)
        finally:
            self.delete(outcome)

    def _check(self, outcome: MethodOutcome, steps: list[Any]) -> None:
        restore = restore_step(steps)
        target = DatabaseTarget.from_result(restore.result) if restore is not None else None
        verify = next((s for s in steps if s.kind.endswith(".verify")), None)
        if target is not None:
            self.result.server_version = target.label
        if outcome.incident_state != "verifying" or target is None or verify is None:
            return
        outcome.checks.append(f"restored into {target.label}: {redact(restore.result['summary'])}")
        head = (verify.result or {}).get("head")
        outcome.checks.append(
            f"the verify passed on {verify.result.get('checked') or target.label} "
            f"(migrations head {head or 'none'})"
        )
        outcome.note = f"restored {self.provider.drill_source(self.env)} into {target.label}"

    def delete(self, outcome: MethodOutcome) -> None:
        """Delete the instance the restore made (only that one), waiting until it is gone."""
        restore = self._restore_row(outcome)
        if restore is None or not (restore.external or restore.result):
            return  # nothing was asked of the service: nothing to delete
        target = DatabaseTarget.from_result(restore.result)
        started = time.monotonic()
        try:
            deleted = self.provider.delete_restored(
                self.drill_env, dict(restore.params or {}), target, outcome.incident_ref, self.echo
            )
        except Exception as exc:  # a leftover: the drill fails and says how to delete it
            problem = redact(exc)
            self.result.leftovers.append(problem)
            self.result.notes.append(f"**clean-up FAILED**: {problem}")
            outcome.steps.append(self._timing(started, False, problem))
            self.echo(f"  problem: {problem}")
            return
        what = ", ".join(deleted) or "nothing (the restore created no instance)"
        outcome.steps.append(self._timing(started, True, f"deleted {what}"))
        if deleted:
            outcome.checks.append(f"deleted {what}, and waited until it was gone")
        self.result.notes.append(f"clean-up deleted {what}")
        self.echo(f"  deleted {what}")

    def _restore_row(self, outcome: MethodOutcome) -> Any | None:
        if not outcome.incident_ref or self.runtime is None:
            return None
        return restore_step(self.runtime.bot.get(outcome.incident_ref).steps)

    @staticmethod
    def _timing(started: float, ok: bool, summary: str) -> StepTiming:
        seconds = time.monotonic() - started
        return StepTiming("delete the restored instance", "drill.cleanup", seconds, ok, summary)

    # -------------------------------------------------------------- the end
    def phases(self, outcome: MethodOutcome) -> str:
        """Restore, verify and delete times, for the report's note."""
        restore = self._restore_row(outcome)
        kinds = {
            "restore": restore.kind if restore is not None else None,
            "verify": next((s.kind for s in outcome.steps if s.kind.endswith(".verify")), None),
            "delete": "drill.cleanup",
        }
        parts = [
            f"{phase} {sum(s.seconds for s in outcome.steps if s.kind == kind):.1f}s"
            for phase, kind in kinds.items()
            if kind and any(s.kind == kind for s in outcome.steps)
        ]
        return ", ".join(parts) or "no phase ran"

    def finish(self) -> None:
        if self.runtime is not None:
            self.runtime.executor.shutdown()
            self.runtime.bot.store.dispose()
        shutil.rmtree(self._tmp, ignore_errors=True)


def run_managed_drill(
    settings: Settings, env_name: str, output: Path, echo: Echo = print
) -> ManagedDrillResult:
    """PITR of ``env_name`` into a new instance, verified there and deleted before this
    returns (the report is written by the caller). Never modifies the source."""
    env = settings.environment(env_name)
    output = output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    drill = ManagedDrill(env, output, echo)
    try:
        drill.start_core()
        echo(f"practising: {TITLE}")
        outcome = drill.outcome()
        try:
            drill.practise(outcome)
        except Exception as exc:  # recorded; the deletion above already ran
            outcome.problems.append(f"the drill could not complete this method: {redact(exc)}")
        drill.core.close(outcome)
        outcome.note = "; ".join(filter(None, [outcome.note, f"phases: {drill.phases(outcome)}"]))
        drill.result.outcomes.append(outcome)
        verdict = "verified" if outcome.verified else "NOT verified"
        echo(f"  {outcome.title}: {outcome.seconds:.1f}s, {verdict}")
        for problem in outcome.problems:
            echo(f"    problem: {redact(problem)}")
    finally:
        drill.finish()
        drill.result.finished_at = datetime.now(UTC)
    return drill.result
