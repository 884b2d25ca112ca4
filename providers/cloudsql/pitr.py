"""Cloud SQL point-in-time restore: ``instances.clone`` with ``cloneContext.pointInTime`` into
a NEW instance ``<instance>-restored-<YYYYMMDD-HHMMSS>``; the source is never modified.

The restore point (PITR enabled, inside the transaction-log window, not in the future) and
the new name (free in the project) are checked when the plan is made and again right
before the clone is sent. The clone's operation name is recorded before waiting, so a
restart polls it and never clones twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from bot.errors import RollbotError
from bot.steps import (
    DatabaseTarget,
    Plan,
    RestoreSource,
    SafetySnapshot,
    StepContext,
    StepResult,
    register_step,
)
from providers.cloudsql.access import (
    MAX_INSTANCE_NAME,
    RESTORED_INFIX,
    client_for,
    cloudsql_config,
    instance_url,
    label,
    source_instance,
    stamp,
    wait_for,
)
from providers.cloudsql.client import CloudSqlClient
from providers.cloudsql.models import Instance
from providers.cloudsql.sources import backup_sources
from providers.cloudsql.window import check_point_in_time, earliest, parse_moment, retention_days

NAME_RULE = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]")


def check_new_name(client: CloudSqlClient, name: str) -> None:
    """A valid instance id that no instance of the project has (Cloud SQL would answer 409)."""
    if len(name) > MAX_INSTANCE_NAME or not NAME_RULE.fullmatch(name):
        raise RollbotError(
            f"{name!r} is not a Cloud SQL instance name (lowercase letters, digits and hyphens, "
            f"starting with a letter, at most {MAX_INSTANCE_NAME} characters)"
        )
    if client.find_instance(name) is not None:
        raise RollbotError(
            f"a Cloud SQL instance named {name!r} already exists in project {client.project}: "
            "choose another name (option new_instance) or delete that instance first"
        )


def estimate(instance: Instance, *, replay: bool = True) -> str:
    """A rough figure from the disk size (Google publishes none); a point-in-time clone also
    replays transaction logs up to the restore point."""
    if instance.disk_gb is None:
        return "tens of minutes (the disk size is unknown)"
    minutes = 10 + instance.disk_gb // 10
    extra = ", plus log replay" if replay else ""
    return f"roughly {minutes} min for {instance.disk_gb} GB of disk{extra}"


def copied_settings(instance: Instance) -> str:
    parts = [
        f"tier {instance.tier or 'as the source'}",
        f"region {instance.region or 'as the source'}",
        instance.database_version or "the same PostgreSQL version",
        f"{instance.disk_gb} GB disk" if instance.disk_gb else "the same disk size",
    ]
    return ", ".join(parts)


def migrations_head_at(url: str, table: str) -> dict[str, Any] | None:
    """The newest migrations-table row: the head the verify must then find."""
    from providers.postgres.conn import connect
    from providers.postgres.snapshot import migrations_head

    with connect(url) as conn:
        return migrations_head(conn, table)


@register_step
@dataclass
class CloudSqlPitrStep:
    snapshot: str | None = None  # a clone's choice is its time; a backup id means restore_backup
    before: str | None = None  # the restore point (ISO 8601 with a zone)
    instance: str | None = None  # pinned: the source instance
    new_name: str | None = None  # pinned (or given as option new_instance)
    kind: ClassVar[str] = "cloudsql.pitr"
    destructive: ClassVar[bool] = True
    # The source instance is left untouched: it is the copy of the state before the restore.
    safety_snapshot: ClassVar[str] = "own"

    def pin(self, ctx: StepContext) -> dict[str, Any]:
        if not self.before:
            raise RollbotError(
                "choose a restore time (`rollbot plan INC pitr --restore-to "
                "2026-12-02T10:30:00Z`, or the card's date picker): Cloud SQL clones the "
                "instance as it was at that moment"
            )
        moment = parse_moment(self.before)
        client = client_for(ctx.environment)
        source = source_instance(client, ctx.environment)
        check_point_in_time(source, moment)
        new_name = self.new_name or f"{source.name}{RESTORED_INFIX}{stamp(datetime.now(UTC))}"
        check_new_name(client, new_name)
        return {
            "snapshot": None,
            "before": moment.isoformat(),
            "instance": source.name,
            "new_name": new_name,
        }

    def _moment(self) -> datetime:
        return parse_moment(str(self.before))

    def sources(self, ctx: StepContext) -> list[RestoreSource]:
        """The instance's backups, for a person who wants an in-place backup restore instead."""
        return backup_sources(ctx, chosen=None, in_place_warning=True)

    def plan(self, ctx: StepContext) -> Plan:
        cfg = cloudsql_config(ctx.environment)
        source = source_instance(client_for(ctx.environment), ctx.environment)
        at = f"{self._moment():%Y-%m-%d %H:%M:%S} UTC"
        first = earliest(source, datetime.now(UTC))
        return Plan(
            title="Cloud SQL point-in-time restore into a new instance (instances.clone)",
            target=f"{label(cfg, source.name)}: cloned, not modified",
            action=f"clone {source.name} as it was at {at} into the NEW instance "
            f"{self.new_name} (cloneContext.pointInTime)",
            restore_point=at,
            data_loss=f"writes to {source.name} after {at} are not in {self.new_name}; "
            f"{source.name} keeps them, untouched",
            estimated=estimate(source),
            details=(
                f"the new instance {self.new_name} gets the source's settings: "
                f"{copied_settings(source)}",
                f"restore window: {first:%Y-%m-%d %H:%M:%S} UTC to now "
                f"({retention_days(source)} day(s) of transaction logs)",
                f"the app keeps using {source.name} until the repoint step points it at "
                f"{self.new_name}",
                f"{self.new_name} is billed until someone deletes it",
            ),
        )

    def run(self, ctx: StepContext) -> StepResult:
        client = client_for(ctx.environment)
        source = source_instance(client, ctx.environment)
        check_point_in_time(source, self._moment())  # time has passed since the plan
        check_new_name(client, str(self.new_name))
        ctx.record_intent(clone=self.new_name, source=source.name, point_in_time=self.before)
        operation = client.clone(source.name, str(self.new_name), self._moment())
        ctx.record_sent(operation=operation.name, created=self.new_name)
        return self._finish(client, ctx)

    def resume(self, ctx: StepContext) -> StepResult:
        return self._finish(client_for(ctx.environment), ctx)

    def _finish(self, client: CloudSqlClient, ctx: StepContext) -> StepResult:
        env = ctx.environment
        cfg = cloudsql_config(env)
        wait_for(client, str(ctx.external["operation"]), env, ctx.report)
        created = client.get_instance(str(self.new_name))
        if created.state != "RUNNABLE":
            return StepResult(False, f"{created.name} is {created.state} after the clone")
        source = client.get_instance(str(self.instance))  # still there, unchanged
        head = migrations_head_at(instance_url(env, client, created.name), env.migrations_table)
        return StepResult(
            True,
            f"{created.name} holds {source.name} as it was at "
            f"{self._moment():%Y-%m-%d %H:%M:%S} UTC; {source.name} is unchanged",
            {"created_instance": created.name, "restore_to": self.before, "migrations_head": head},
            safety=SafetySnapshot(source.name, f"{label(cfg, source.name)}, left unchanged"),
            target=DatabaseTarget(
                label(cfg, created.name), {"instance": created.name, "project": cfg.project}
            ),
        )

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        return [
            f"rollbot may have asked Cloud SQL to clone {self.instance} into {self.new_name}: "
            f"if that instance exists (gcloud sql instances describe {self.new_name}), use it "
            "or delete it before retrying"
        ]
