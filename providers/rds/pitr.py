"""RDS point-in-time restore into a NEW instance (RDS never restores in place), or, for an
Aurora cluster, into a new cluster with a writer instance of its own.

The source is never modified: it is the safety copy, and keeps every write made after the
restore point. The new id is recorded on the step before the restore is sent and marked
sent right after RDS accepts it, so a restart resumes the wait and never restores twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from bot.steps import (
    Plan,
    RestoreSource,
    SafetySnapshot,
    StepContext,
    StepResult,
    register_step,
)
from providers.rds import aurora
from providers.rds.access import endpoint_of, rds_config, restored_name
from providers.rds.choice import LATEST, RestorePoint, restore_point
from providers.rds.client import RdsClient, rds_client, refuse_existing
from providers.rds.leftovers import describe_leftovers
from providers.rds.restored import migrations_head_at, target_of
from providers.rds.settings import (
    Setting,
    as_params,
    cluster_settings,
    instance_settings,
    pinned,
    unpinned,
)
from providers.rds.waiting import wait_available
from providers.rds.window import Window, instance_window


def estimate(gib: Any) -> str | None:
    """A rough duration from the allocated storage (restore from backup, then log replay)."""
    if not isinstance(gib, int) or gib <= 0:
        return None
    return f"roughly {10 + gib // 50}-{30 + gib // 10} min for {gib} GiB (more if busy)"


def incident_ref(ctx: StepContext) -> str:
    return f"INC-{ctx.incident_id}"


@register_step
@dataclass
class RdsPitrStep:
    snapshot: str | None = None  # "latest": the latest restorable time (picked from sources)
    before: str | None = None  # the restore time (ISO), as the PostgreSQL restore names it
    source_id: str | None = None  # pinned: the instance (or Aurora cluster) restored from
    new_id: str | None = None  # pinned: the new instance (or cluster)
    writer_id: str | None = None  # pinned, Aurora: the new cluster's instance
    settings: list[dict[str, Any]] | None = None  # pinned: copied or overridden settings
    writer_class: str | None = None  # pinned, Aurora
    engine: str | None = None  # pinned, Aurora
    kind: ClassVar[str] = "rds.pitr"
    destructive: ClassVar[bool] = True
    # The source instance is left exactly as it is: it is the copy of the state before.
    safety_snapshot: ClassVar[str] = "own"

    # ------------------------------------------------------------------ plan
    def _point(self) -> RestorePoint:
        return restore_point(self.snapshot, self.before)

    def _aurora(self, ctx: StepContext) -> bool:
        return bool(rds_config(ctx.environment).cluster_id)

    def pin(self, ctx: StepContext) -> dict[str, Any]:
        cfg = rds_config(ctx.environment)
        point = self._point()
        now = datetime.now(UTC)
        with rds_client(cfg) as client:
            if cfg.cluster_id:
                return {**self._base(point), **aurora.pin(client, cfg, point, now)}
            source = client.instance(str(cfg.instance_id))
            window = instance_window(client, source)
            if point.moment is not None:
                window.check(point.moment)
            new_id = restored_name(str(cfg.instance_id), now)
            refuse_existing(client, new_id)
        return {
            **self._base(point),
            "source_id": cfg.instance_id,
            "new_id": new_id,
            "settings": pinned(instance_settings(cfg, source)),
        }

    def _base(self, point: RestorePoint) -> dict[str, Any]:
        return {
            "snapshot": LATEST if point.latest else None,
            "before": point.moment.isoformat() if point.moment else None,
        }

    def sources(self, ctx: StepContext) -> list[RestoreSource]:
        """RDS restores to a time (the date picker), or to the latest restorable time."""
        point = self._point()
        chosen = (
            [RestoreSource(point.moment.isoformat(), f"{point.text()} (chosen)", chosen=True)]
            if point.moment is not None
            else []
        )
        latest = RestoreSource(
            LATEST,
            "the latest restorable time (minutes ago: it holds the damage if the damage is older)",
            chosen=point.latest,
        )
        return [*chosen, latest]

    def _read_source(self, ctx: StepContext) -> tuple[str, dict[str, Any], Window, list[Setting]]:
        """The source, its window and the copy's settings: pinned ones, or (for a preview of
        a method not yet chosen) what pinning would give now."""
        cfg = rds_config(ctx.environment)
        source_id = str(self.source_id or cfg.cluster_id or cfg.instance_id)
        with rds_client(cfg) as client:
            if cfg.cluster_id:
                source = client.cluster(source_id)
                window, settings = aurora.window_of(source), cluster_settings(cfg, source)
            else:
                source = client.instance(source_id)
                window, settings = instance_window(client, source), instance_settings(cfg, source)
        if self.settings is not None:
            settings = unpinned(self.settings)
        return source_id, source, window, settings

    def plan(self, ctx: StepContext) -> Plan:
        cfg, env = rds_config(ctx.environment), ctx.environment
        point = self._point()
        source_id, source, window, settings = self._read_source(ctx)
        if point.moment is not None:
            window.check(point.moment)
        what = "cluster" if cfg.cluster_id else "instance"
        at = point.text(window) if point.chosen else "the time still to be chosen"
        new_id = self.new_id or f"{source_id}-restored-<YYYYMMDD-HHMMSS>"
        lines = [s.line(source_id, env.name) for s in settings]
        if cfg.cluster_id:
            writer = f"{self.writer_class} ({self.engine})" if self.writer_class else "added"
            lines.append(f"writer instance {self.writer_id or new_id + '-1'}: {writer}")
        details = [
            f"restore window: {window.text()} (earliest from {window.source})",
            *lines,
            f"the new {what} is tagged rollbot:incident={incident_ref(ctx)}",
        ]
        if not point.chosen:
            details.insert(
                0,
                "NO RESTORE POINT CHOSEN: pick a time or the latest restorable "
                "time before approving; the run refuses without one",
            )
        return Plan(
            title=f"{'Aurora' if cfg.cluster_id else 'RDS'} point-in-time restore into a new "
            f"{what}",
            target=f"RDS {what} {source_id} ({cfg.region})",
            action=f"restore {source_id} as it was at {at} into the new {what} "
            f"{new_id}; {source_id} itself is not modified",
            restore_point=point.text(window),
            data_loss=f"writes to {source_id} after {at} will not be in {new_id}; "
            f"{source_id} keeps them, untouched, and stays readable",
            estimated=aurora.estimate()
            if cfg.cluster_id
            else estimate(source.get("AllocatedStorage")),
            details=tuple(details),
        )

    # ------------------------------------------------------------------- run
    def run(self, ctx: StepContext) -> StepResult:
        point = self._point()
        point.require()
        cfg = rds_config(ctx.environment)
        with rds_client(cfg) as client:
            if self._aurora(ctx):
                aurora.restore(client, ctx, self, point)
                return self._finish_cluster(client, ctx)
            source = client.instance(str(self.source_id))
            if point.moment is not None:  # time has passed since the plan
                instance_window(client, source).check(point.moment)
            refuse_existing(client, str(self.new_id))
            params = as_params(
                unpinned(self.settings or []), str(self.source_id), incident_ref(ctx)
            )
            timing = (
                {"UseLatestRestorableTime": True} if point.latest else {"RestoreTime": point.moment}
            )
            ctx.record_intent(instance_id=self.new_id, source=self.source_id)
            client.restore_instance(
                SourceDBInstanceIdentifier=self.source_id,
                TargetDBInstanceIdentifier=self.new_id,
                **timing,
                **params,
            )
            ctx.record_sent(instance_id=self.new_id)
            ctx.audit("provider", f"RDS restore sent: {self.source_id} -> {self.new_id}", {})
            return self._finish_instance(client, ctx)

    def resume(self, ctx: StepContext) -> StepResult:
        """After a restart: poll what was recorded; the restore is never sent again."""
        with rds_client(rds_config(ctx.environment)) as client:
            if self._aurora(ctx):
                return self._finish_cluster(client, ctx)
            return self._finish_instance(client, ctx)

    def _finish_instance(self, client: RdsClient, ctx: StepContext) -> StepResult:
        new_id = str(ctx.external.get("instance_id") or self.new_id)
        described = wait_available(
            ctx,
            f"RDS instance {new_id}",
            lambda: client.instance_or_none(new_id),
            "DBInstanceStatus",
        )
        source = client.instance(str(self.source_id))  # still there, as it was: the safety copy
        return self._result(ctx, described, source["DBInstanceIdentifier"], {"instance_id": new_id})

    def _finish_cluster(self, client: RdsClient, ctx: StepContext) -> StepResult:
        cluster = aurora.finish(client, ctx, self)
        ref = {"cluster_id": str(self.new_id), "instance_id": str(self.writer_id)}
        return self._result(ctx, cluster, str(self.source_id), ref)

    def _result(
        self, ctx: StepContext, described: dict[str, Any], source_id: str, ref: dict[str, str]
    ) -> StepResult:
        endpoint = endpoint_of(described)
        if endpoint is None:
            return StepResult(False, f"{self.new_id} is available but reports no endpoint")
        target = target_of(ref, endpoint, aurora=self._aurora(ctx))
        host, port = endpoint
        head = migrations_head_at(ctx, target)
        what = "cluster" if self._aurora(ctx) else "instance"
        summary = (
            f"new {what} {self.new_id} holds {source_id} as it was at {self._point().text()}; "
            f"endpoint {host}:{port}; {source_id} is unchanged"
        )
        ctx.report(summary)
        return StepResult(
            True,
            summary,
            {
                **ref,
                "endpoint": f"{host}:{port}",
                "restore_to": self.before or LATEST,
                "migrations_head": head,
            },
            safety=SafetySnapshot(source_id, f"RDS {what} {source_id} (left unchanged)"),
            target=target,
        )

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        with rds_client(rds_config(ctx.environment)) as client:
            return describe_leftovers(client, ctx, self, remove)
