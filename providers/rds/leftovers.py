"""What a restore interrupted mid-way may have left: the new instance (or cluster) rollbot
asked for. Removed only when it is provably rollbot's (its recorded name *and* this
incident's tag); anything else is listed for a person and left alone."""

from __future__ import annotations

from typing import Any

from bot.errors import RollbotError
from bot.steps import StepContext
from providers.rds.access import TAG_INCIDENT, rds_config
from providers.rds.client import RdsClient


def _ours(described: dict[str, Any], ref: str) -> bool:
    tags = {t.get("Key"): t.get("Value") for t in described.get("TagList") or []}
    return tags.get(TAG_INCIDENT) == ref


def _one(
    what: str,
    name: str,
    described: dict[str, Any] | None,
    ref: str,
    remove: bool,
    delete: Any,
) -> str:
    if described is None:
        return f"no {what} {name} exists: the restore was not started, nothing to remove"
    status = described.get("DBInstanceStatus") or described.get("Status") or "unknown"
    if not _ours(described, ref):
        return f"{what} {name} ({status}) exists but is not tagged {TAG_INCIDENT}={ref}: left alone"
    if not remove:
        return (
            f"{what} {name} ({status}) is the half-created copy rollbot made for {ref}: it is "
            "deleted once no other step of the environment runs, or delete it in the console"
        )
    try:
        delete(name)
    except RollbotError as exc:
        return f"{what} {name} ({status}) is rollbot's but could not be deleted: {exc}"
    return f"deleted {what} {name} ({status}), the half-created copy rollbot made for {ref}"


def describe_leftovers(client: RdsClient, ctx: StepContext, step: Any, remove: bool) -> list[str]:
    intent = dict((ctx.external or {}).get("intent") or {})
    ref = f"INC-{ctx.incident_id}"
    if not intent:
        return [f"rollbot had not asked RDS for {step.new_id} yet: nothing to remove"]
    lines = []
    instance = intent.get("instance_id")
    if instance:
        found = client.instance_or_none(str(instance))
        lines.append(
            _one("RDS instance", str(instance), found, ref, remove, client.delete_instance)
        )
    cluster = intent.get("cluster_id") if rds_config(ctx.environment).cluster_id else None
    if cluster:
        found = client.cluster_or_none(str(cluster))
        lines.append(
            _one("Aurora cluster", str(cluster), found, ref, remove, client.delete_cluster)
        )
    return lines
