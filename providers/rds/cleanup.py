"""Deleting the copy a drill's restore made, and waiting until RDS no longer knows it.

A drill restores into a new, billable instance (Aurora: a cluster and its writer) and must
not leave it behind. Only what rollbot named for that restore is deleted: the step's pinned
new id, carrying ``-restored-``, never the source, matching the target the step declared
and tagged ``rollbot:incident`` with the drill's incident. Anything else is refused, and
what could not be deleted is named with the command that deletes it by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bot.config import EnvironmentConfig
from bot.errors import ProviderError
from bot.steps import DatabaseTarget
from providers.rds.access import RESTORED, TAG_INCIDENT, rds_config
from providers.rds.client import RdsClient, RdsError, rds_client
from providers.rds.config import RdsConfig

Report = Callable[[str], None]


def by_hand(what: str, name: str, region: str) -> str:
    if what == "cluster":
        return (
            f"aws rds delete-db-cluster --region {region} --db-cluster-identifier {name} "
            "--skip-final-snapshot"
        )
    return (
        f"aws rds delete-db-instance --region {region} --db-instance-identifier {name} "
        "--skip-final-snapshot --delete-automated-backups"
    )


def _names(cfg: RdsConfig, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, id) to delete, writer before its cluster; refused unless rollbot named them."""
    new_id, writer = params.get("new_id"), params.get("writer_id")
    named = (
        [("instance", writer), ("cluster", new_id)] if cfg.cluster_id else [("instance", new_id)]
    )
    sources = {cfg.instance_id, cfg.cluster_id, params.get("source_id")} - {None}
    for what, name in named:
        if not name or RESTORED not in str(name) or name in sources:
            raise ProviderError(
                f"the restore step names {what} {name!r}, which is not a copy rollbot named "
                "for this restore: nothing is deleted (check the RDS console)"
            )
    return [(what, str(name)) for what, name in named]


def _check_declared(target: DatabaseTarget | None, names: list[tuple[str, str]]) -> None:
    if target is None:
        return
    declared = {
        ("cluster", target.ref.get("cluster_id")),
        ("instance", target.ref.get("instance_id")),
    }
    if not set(names) <= declared:
        raise ProviderError(
            f"the restore declared {target.label}, not {', '.join(n for _, n in names)}: "
            "nothing is deleted (check the RDS console)"
        )


def _describe(client: RdsClient, what: str, name: str) -> dict[str, Any] | None:
    return client.cluster_or_none(name) if what == "cluster" else client.instance_or_none(name)


def _check_ours(described: dict[str, Any], what: str, name: str, ref: str) -> None:
    tags = {t.get("Key"): t.get("Value") for t in described.get("TagList") or []}
    if tags.get(TAG_INCIDENT) != ref:
        raise ProviderError(
            f"RDS {what} {name} is not tagged {TAG_INCIDENT}={ref}: it is not the drill's "
            "copy, so rollbot leaves it alone"
        )


def _wait_gone(
    client: RdsClient,
    cfg: RdsConfig,
    what: str,
    name: str,
    report: Report,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    deadline = time.monotonic() + cfg.max_wait_minutes * 60
    while (found := _describe(client, what, name)) is not None:
        status = found.get("DBInstanceStatus") or found.get("Status") or "unknown"
        if time.monotonic() >= deadline:
            raise ProviderError(
                f"RDS {what} {name} is still {status} after {cfg.max_wait_minutes:g} min"
            )
        report(f"RDS {what} {name}: {status}")
        sleep(cfg.poll_seconds)


def _delete_one(
    client: RdsClient, cfg: RdsConfig, what: str, name: str, ref: str, report: Report
) -> bool:
    """True when it was deleted, False when it did not exist (the restore made nothing)."""
    described = _describe(client, what, name)
    if described is None:
        return False
    _check_ours(described, what, name, ref)
    if what == "cluster":
        client.delete_cluster(name)
    else:
        client.delete_instance(name)  # SkipFinalSnapshot, DeleteAutomatedBackups
    _wait_gone(client, cfg, what, name, report)
    return True


def delete_restored(
    env: EnvironmentConfig,
    params: dict[str, Any],
    target: DatabaseTarget | None,
    incident_ref: str,
    report: Report,
) -> list[str]:
    """Delete the copy the ``rds.pitr`` step with ``params`` made; what was deleted back.

    Raises a ProviderError naming every copy still there and how to delete it by hand.
    """
    cfg = rds_config(env)
    names = _names(cfg, params)
    _check_declared(target, names)
    deleted: list[str] = []
    with rds_client(cfg) as client:
        for what, name in names:
            try:
                if _delete_one(client, cfg, what, name, incident_ref, report):
                    deleted.append(f"RDS {what} {name}")
            except (RdsError, ProviderError) as exc:
                left = [n for n in names[names.index((what, name)) :]]
                hand = "; ".join(by_hand(w, n, cfg.region) for w, n in left)
                raise ProviderError(
                    f"RDS {what} {name} could not be deleted ({exc}); left behind: "
                    f"{', '.join(n for _, n in left)}; delete by hand: {hand}"
                ) from None
    return deleted
