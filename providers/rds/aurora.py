"""Aurora: the cluster is restored (``RestoreToTime``, ``RestoreType='full-copy'``) into a new
cluster, which has no instance until rollbot adds a writer (``create_db_instance``).

Two mutations, each recorded: the cluster restore before it is sent and right after, the
writer when it is asked for. A restart after either polls; it creates the writer only when
RDS has no instance of that (recorded) name, so nothing is ever created twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.errors import RollbotError
from bot.steps import StepContext
from providers.rds.access import TAG_INCIDENT, TAG_SOURCE, restored_name
from providers.rds.choice import RestorePoint
from providers.rds.client import RdsClient, refuse_existing
from providers.rds.config import RdsConfig
from providers.rds.settings import as_params, cluster_settings, pinned, unpinned
from providers.rds.waiting import wait_available
from providers.rds.window import Window, cluster_window


def window_of(cluster: dict[str, Any]) -> Window:
    return cluster_window(cluster)


def estimate() -> str:
    return "roughly 10-30 min for the cluster, then 5-15 min for its writer instance"


def _writer_class(client: RdsClient, cfg: RdsConfig, source: dict[str, Any]) -> str:
    if cfg.instance_class:
        return cfg.instance_class
    for member in source.get("DBClusterMembers") or []:
        if member.get("IsClusterWriter"):
            return str(client.instance(member["DBInstanceIdentifier"])["DBInstanceClass"])
    raise RollbotError(
        f"Aurora cluster {source['DBClusterIdentifier']} has no writer instance to copy the "
        f"instance class from: set instance_class in its [environments.NAME.rds] section"
    )


def pin(client: RdsClient, cfg: RdsConfig, point: RestorePoint, now: datetime) -> dict[str, Any]:
    source_id = str(cfg.cluster_id)
    source = client.cluster(source_id)
    if point.moment is not None:
        window_of(source).check(point.moment)
    new_id = restored_name(source_id, now)
    writer_id = restored_name(source_id, now, "-1")
    refuse_existing(client, new_id, cluster=True)
    refuse_existing(client, writer_id)
    return {
        "source_id": source_id,
        "new_id": new_id,
        "writer_id": writer_id,
        "settings": pinned(cluster_settings(cfg, source)),
        "writer_class": _writer_class(client, cfg, source),
        "engine": source["Engine"],
    }


def restore(client: RdsClient, ctx: StepContext, step: Any, point: RestorePoint) -> None:
    """Send the cluster restore, recorded before and after."""
    source = client.cluster(str(step.source_id))
    if point.moment is not None:  # time has passed since the plan
        window_of(source).check(point.moment)
    refuse_existing(client, str(step.new_id), cluster=True)
    params = as_params(unpinned(step.settings or []), str(step.source_id), f"INC-{ctx.incident_id}")
    timing = {"UseLatestRestorableTime": True} if point.latest else {"RestoreToTime": point.moment}
    ctx.record_intent(cluster_id=step.new_id, instance_id=step.writer_id, source=step.source_id)
    client.restore_cluster(
        DBClusterIdentifier=step.new_id,
        SourceDBClusterIdentifier=step.source_id,
        RestoreType="full-copy",
        **timing,
        **params,
    )
    ctx.record_sent(cluster_id=step.new_id)
    ctx.audit("provider", f"Aurora restore sent: {step.source_id} -> {step.new_id}", {})


def finish(client: RdsClient, ctx: StepContext, step: Any) -> dict[str, Any]:
    """Wait for the cluster, add its writer (once), wait for that; the cluster back."""
    cluster_id, writer_id = str(step.new_id), str(step.writer_id)
    wait_available(
        ctx, f"Aurora cluster {cluster_id}", lambda: client.cluster_or_none(cluster_id), "Status"
    )
    if not ctx.external.get("instance_created"):
        if client.instance_or_none(writer_id) is None:
            ctx.record_sent(instance_intent=writer_id)
            client.create_instance(
                DBInstanceIdentifier=writer_id,
                DBClusterIdentifier=cluster_id,
                Engine=step.engine,
                DBInstanceClass=step.writer_class,
                Tags=[
                    {"Key": TAG_INCIDENT, "Value": f"INC-{ctx.incident_id}"},
                    {"Key": TAG_SOURCE, "Value": str(step.source_id)},
                ],
            )
        ctx.record_sent(instance_created=writer_id)
    wait_available(
        ctx,
        f"Aurora instance {writer_id}",
        lambda: client.instance_or_none(writer_id),
        "DBInstanceStatus",
    )
    client.cluster(str(step.source_id))  # the source is still there: the safety copy
    return client.cluster(cluster_id)
