"""Deleting the instance a drill's clone made (``instances.delete``, its operation to DONE),
and the drill's restore point: the latest time Cloud SQL can clone the instance to.

Only the clone's pinned new name is deleted: it carries ``-restored-``, is never the
source, and matches the target the step declared. What could not be deleted is named with
the ``gcloud`` command that deletes it by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot.config import EnvironmentConfig
from bot.errors import ProviderError, RollbotError
from bot.steps import DatabaseTarget
from providers.cloudsql.access import RESTORED_INFIX, client_for, cloudsql_config, wait_for

Report = Callable[[str], None]


def by_hand(name: str, project: str) -> str:
    return f"gcloud sql instances delete {name} --project {project}"


def latest_point(env: EnvironmentConfig) -> datetime:
    """``getLatestRecoveryTime`` of the source, else now (the newest a clone can hold)."""
    client = client_for(env)
    found = client.latest_recovery_time(cloudsql_config(env).instance)
    now = datetime.now(UTC)
    return min(found, now) if found is not None else now


def _name(env: EnvironmentConfig, params: dict[str, Any], target: DatabaseTarget | None) -> str:
    cfg = cloudsql_config(env)
    name = params.get("new_name")
    if (
        not name
        or RESTORED_INFIX not in str(name)
        or name in {cfg.instance, params.get("instance")}
    ):
        raise ProviderError(
            f"the clone step names instance {name!r}, which is not a copy rollbot named for "
            "this restore: nothing is deleted (check the Cloud SQL console)"
        )
    if target is not None and target.ref.get("instance") != name:
        raise ProviderError(
            f"the clone declared {target.label}, not {name}: nothing is deleted (check the "
            "Cloud SQL console)"
        )
    return str(name)


def delete_restored(
    env: EnvironmentConfig,
    params: dict[str, Any],
    target: DatabaseTarget | None,
    report: Report,
) -> list[str]:
    """Delete the instance the ``cloudsql.pitr`` step with ``params`` cloned into; what was
    deleted back (nothing when the clone made none). Raises naming what is left."""
    cfg = cloudsql_config(env)
    name = _name(env, params, target)
    client = client_for(env)
    try:
        if client.find_instance(name) is None:
            return []
        operation = client.delete_instance(name)
        wait_for(client, operation.name, env, report)
        if client.find_instance(name) is not None:
            raise ProviderError(f"{name} still exists after its delete operation was DONE")
    except RollbotError as exc:
        raise ProviderError(
            f"Cloud SQL instance {name} could not be deleted ({exc}); left behind: {name}; "
            f"delete by hand: {by_hand(name, cfg.project)}"
        ) from None
    return [f"Cloud SQL instance {name} (project {cfg.project})"]
