"""Cloud SQL backup restore: ``instances.restoreBackup`` OVERWRITES the instance in place.

So it runs only after ``cloudsql.backup`` took an on-demand backup (``backupRuns.insert``),
waited for its operation and read the backup run back as ``SUCCESSFUL``: that step declares
the safety snapshot the executor requires before the destructive restore. Both record their
operation name before waiting, so a restart polls and never sends again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from bot.steps import Plan, RestoreSource, SafetySnapshot, StepContext, StepResult, register_step
from providers.cloudsql.access import (
    client_for,
    cloudsql_config,
    label,
    source_instance,
    stamp,
    wait_for,
)
from providers.cloudsql.client import CloudSqlClient
from providers.cloudsql.models import CloudSqlError
from providers.cloudsql.pitr import estimate, migrations_head_at
from providers.cloudsql.sources import (
    SAFETY_PREFIX,
    backup_sources,
    choose_backup,
    describe,
    successful_backups,
)
from providers.cloudsql.window import parse_moment


@register_step
@dataclass
class CloudSqlBackupStep:
    """The safety copy: an on-demand backup, confirmed SUCCESSFUL before anything else runs."""

    description: str | None = None  # pinned: finds the run again if the operation does not say
    kind: ClassVar[str] = "cloudsql.backup"
    destructive: ClassVar[bool] = False

    def pin(self, ctx: StepContext) -> dict[str, Any]:
        when = stamp(datetime.now(UTC))
        return {"description": f"{SAFETY_PREFIX} INC-{ctx.incident_id} {when}"}

    def plan(self, ctx: StepContext) -> Plan:
        cfg = cloudsql_config(ctx.environment)
        return Plan(
            title="Take an on-demand backup of the instance (the safety copy)",
            target=label(cfg, cfg.instance),
            action=f"backupRuns.insert on {cfg.instance}, wait for its operation, then read the "
            "backup run back: only a SUCCESSFUL one counts",
            data_loss="none (a backup only reads)",
            estimated="minutes (Cloud SQL backups are incremental snapshots)",
        )

    def run(self, ctx: StepContext) -> StepResult:
        client = client_for(ctx.environment)
        instance = source_instance(client, ctx.environment).name
        ctx.record_intent(backup_of=instance, description=self.description)
        operation = client.insert_backup(instance, str(self.description))
        ctx.record_sent(operation=operation.name, backup_id=operation.backup_id)
        return self._finish(client, ctx)

    def resume(self, ctx: StepContext) -> StepResult:
        return self._finish(client_for(ctx.environment), ctx)

    def _finish(self, client: CloudSqlClient, ctx: StepContext) -> StepResult:
        cfg = cloudsql_config(ctx.environment)
        name = str(ctx.external["operation"])
        wait_for(client, name, ctx.environment, ctx.report)
        backup_id = ctx.external.get("backup_id") or client.operation(name).backup_id
        run = (
            client.backup_run(cfg.instance, str(backup_id))
            if backup_id
            else next(
                (r for r in client.backup_runs(cfg.instance) if r.description == self.description),
                None,
            )
        )
        if run is None:
            return StepResult(False, f"no backup run named {self.description!r} after the backup")
        if run.status != "SUCCESSFUL":
            return StepResult(
                False,
                f"on-demand backup run {run.id} is {run.status}, not SUCCESSFUL: no restore "
                "without a safety copy",
            )
        where = f"{label(cfg, cfg.instance)}, on-demand backup run {run.id} ({run.when})"
        return StepResult(
            True,
            f"on-demand backup run {run.id} of {cfg.instance} is SUCCESSFUL",
            {"backup_id": run.id},
            safety=SafetySnapshot(f"backup run {run.id}", where),
        )

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        cfg = cloudsql_config(ctx.environment)
        return [
            f"rollbot may have started an on-demand backup of {cfg.instance} "
            f"({self.description!r}); it is harmless, check `gcloud sql backups list "
            f"--instance {cfg.instance}`"
        ]


@register_step
@dataclass
class CloudSqlRestoreBackupStep:
    """The runbook's ``gcloud sql instances restore-backup``: the instance is overwritten."""

    snapshot: str | None = None  # the backup run id people picked; pinned to the chosen one
    before: str | None = None  # or: the newest backup taken before this time
    instance: str | None = None  # pinned
    backup_when: str | None = None  # pinned, for the plan
    kind: ClassVar[str] = "cloudsql.restore_backup"
    destructive: ClassVar[bool] = True  # the executor wants cloudsql.backup's safety copy first

    def pin(self, ctx: StepContext) -> dict[str, Any]:
        client = client_for(ctx.environment)
        instance = source_instance(client, ctx.environment).name
        runs = successful_backups(client, instance)
        before = parse_moment(self.before) if self.before else None
        run = choose_backup(runs, instance, self.snapshot, before)
        return {
            "snapshot": run.id,
            "before": self.before,
            "instance": instance,
            "backup_when": describe(run),
        }

    def sources(self, ctx: StepContext) -> list[RestoreSource]:
        return backup_sources(ctx, chosen=self.snapshot)

    def plan(self, ctx: StepContext) -> Plan:
        cfg = cloudsql_config(ctx.environment)
        source = source_instance(client_for(ctx.environment), ctx.environment)
        return Plan(
            title=f"OVERWRITE Cloud SQL instance {self.instance} with a backup "
            "(instances.restoreBackup, in place)",
            target=f"{label(cfg, str(self.instance))}: every database on it is replaced",
            action=f"put {self.instance} back to {self.backup_when}; this is NOT a clone, "
            "the instance itself goes back to the backup",
            restore_point=self.backup_when,
            data_loss=f"EVERYTHING written to {self.instance} after that backup is lost from the "
            "instance, in all of its databases; it survives only in the on-demand safety backup "
            "the step before takes",
            estimated=estimate(source, replay=False),
            details=(
                "WARNING: in-place restore; for a copy that leaves the instance alone, use the "
                "point-in-time restore (a clone into a new instance) instead",
                f"{self.instance} restarts and is unavailable while it restores; open "
                "connections drop",
                "the app keeps its DATABASE_URL: the database does not move",
            ),
        )

    def run(self, ctx: StepContext) -> StepResult:
        client = client_for(ctx.environment)
        instance = source_instance(client, ctx.environment).name
        ctx.record_intent(restore_backup=self.snapshot, instance=instance)
        operation = client.restore_backup(instance, str(self.snapshot), instance)
        ctx.record_sent(operation=operation.name)
        return self._finish(client, ctx)

    def resume(self, ctx: StepContext) -> StepResult:
        return self._finish(client_for(ctx.environment), ctx)

    def _finish(self, client: CloudSqlClient, ctx: StepContext) -> StepResult:
        env = ctx.environment
        wait_for(client, str(ctx.external["operation"]), env, ctx.report)
        restored = client.get_instance(str(self.instance))
        if restored.state != "RUNNABLE":
            raise CloudSqlError(f"{restored.name} is {restored.state} after the restore")
        head = migrations_head_at(env.database_url(), env.migrations_table)
        return StepResult(
            True,
            f"{restored.name} restored from {self.backup_when}",
            {"restored_backup": self.snapshot, "migrations_head": head},
        )

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        return [
            f"rollbot may have asked Cloud SQL to restore backup run {self.snapshot} over "
            f"{self.instance}: check its operations (gcloud sql operations list --instance "
            f"{self.instance}) before retrying"
        ]
