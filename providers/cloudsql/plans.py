"""What each runbook method means on Cloud SQL.

*PITR* is a clone to the chosen time into a new instance, then the lead's repoint step
(``deploy.repoint``) and verify on the new instance. The runbook's other Cloud SQL command,
``gcloud sql instances restore-backup``, has no method id of its own: it is PITR with the
option ``from_backup`` (or a picked backup run id, option ``snapshot``): a confirmed
on-demand backup first, then the in-place restore, then verify. Every other method
(forward-fix, pg_dump restore, triage, app rollback) is PostgreSQL and runs as there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.config import EnvironmentConfig
from bot.errors import RollbotError
from bot.methods import StepSpec
from bot.steps import DatabaseTarget
from providers.cloudsql.access import cloudsql_config
from providers.cloudsql.config import CloudSqlConfig
from providers.postgres.plans import PostgresPlans


def _verify(options: dict[str, Any]) -> StepSpec:
    params = {"expected_head": options["expected_head"]} if options.get("expected_head") else {}
    return StepSpec("cloudsql.verify", "Verify the database where it now lives", params)


def _from_backup(options: dict[str, Any]) -> list[StepSpec]:
    if options.get("into_new"):
        raise RollbotError(
            "a Cloud SQL backup restore overwrites the instance in place; for a new instance "
            "use point-in-time restore without from_backup (a clone)"
        )
    restore = {"snapshot": options.get("snapshot"), "before": options.get("restore_to")}
    return [
        StepSpec("cloudsql.backup", "Take an on-demand backup first (the safety copy)"),
        StepSpec(
            "cloudsql.restore_backup", "OVERWRITE the instance with the chosen backup", restore
        ),
        _verify(options),
    ]


def _clone(options: dict[str, Any]) -> list[StepSpec]:
    params = {"snapshot": None, "before": options.get("restore_to")}
    if options.get("new_instance"):
        params["new_name"] = options["new_instance"]
    return [
        StepSpec(
            "cloudsql.pitr",
            "Clone the instance as it was at the chosen time (new instance)",
            params,
        ),
        StepSpec("deploy.repoint", "Point the app at the restored instance and redeploy"),
        _verify(options),
    ]


@dataclass(frozen=True)
class CloudSqlPlans:
    """``bot.methods.Provider`` for Google Cloud SQL for PostgreSQL."""

    name: str = "cloudsql"
    config_model: type[Any] | None = CloudSqlConfig

    def steps_for(
        self, method_id: str, env: EnvironmentConfig, options: dict[str, Any]
    ) -> list[StepSpec]:
        if method_id == "pitr":
            if options.get("from_backup") or options.get("snapshot"):
                return _from_backup(options)
            return _clone(options)
        return PostgresPlans(self.name, CloudSqlConfig).steps_for(method_id, env, options)

    def connection_url(self, env: EnvironmentConfig, target: DatabaseTarget) -> str:
        """For ``deploy.repoint`` (``bot.methods.target_url``): the new instance's URL."""
        from providers.cloudsql.verify import connection_url

        return connection_url(env, target)

    # ------------------------------------------------ for ``rollbot drill --env`` (managed)
    def drill_source(self, env: EnvironmentConfig) -> str:
        cfg = cloudsql_config(env)
        return f"Cloud SQL instance {cfg.instance} (project {cfg.project})"

    def drill_options(self, env: EnvironmentConfig) -> dict[str, Any]:
        """A clone (never ``from_backup``) to the latest time Cloud SQL can restore to."""
        from providers.cloudsql.cleanup import latest_point

        return {"restore_to": latest_point(env).isoformat()}

    def delete_restored(
        self,
        env: EnvironmentConfig,
        params: dict[str, Any],
        target: DatabaseTarget | None,
        incident_ref: str,
        report: Callable[[str], None],
    ) -> list[str]:
        """Delete the instance the drill's clone made (``instances.delete``, to DONE)."""
        from providers.cloudsql.cleanup import delete_restored

        return delete_restored(env, params, target, report)
