"""What each runbook method means on RDS. Point-in-time restore uses the RDS API (into a new
instance, then the app is repointed, then verify there); the rest (forward-fix, pg_dump
restore, triage, app rollback) is PostgreSQL and runs as there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.config import EnvironmentConfig
from bot.methods import StepSpec
from bot.steps import DatabaseTarget
from providers.postgres.plans import PostgresPlans
from providers.rds import access
from providers.rds.choice import LATEST
from providers.rds.config import RdsConfig


@dataclass(frozen=True)
class RdsPlans:
    """``bot.methods.Provider`` for AWS RDS and Aurora."""

    name: str = "rds"
    config_model: type[Any] | None = RdsConfig

    def steps_for(
        self, method_id: str, env: EnvironmentConfig, options: dict[str, Any]
    ) -> list[StepSpec]:
        if method_id != "pitr":
            return PostgresPlans(self.name, RdsConfig).steps_for(method_id, env, options)
        cluster = bool(access.rds_config(env).cluster_id)
        restore = StepSpec(
            "rds.pitr",
            f"Restore the {'cluster' if cluster else 'instance'} as it was at the chosen time "
            f"into a new {'cluster' if cluster else 'instance'}",
            {"snapshot": options.get("snapshot"), "before": options.get("restore_to")},
        )
        head = {"expected_head": options["expected_head"]} if options.get("expected_head") else {}
        return [
            restore,
            StepSpec("deploy.repoint", "Point the app at the restored instance and redeploy"),
            StepSpec("rds.verify", "Verify the database on the restored instance", head),
        ]

    def connection_url(self, env: EnvironmentConfig, target: DatabaseTarget) -> str:
        """The restored instance's connection string for the app (the source's credentials)."""
        return access.connection_url(env, target)

    # ------------------------------------------------ for ``rollbot drill --env`` (managed)
    def drill_source(self, env: EnvironmentConfig) -> str:
        cfg = access.rds_config(env)
        return (
            f"Aurora cluster {cfg.cluster_id}"
            if cfg.cluster_id
            else f"RDS instance {cfg.instance_id}"
        )

    def drill_options(self, env: EnvironmentConfig) -> dict[str, Any]:
        """A drill restores to the latest restorable time (a person's choice, here the drill's)."""
        return {"snapshot": LATEST}

    def delete_restored(
        self,
        env: EnvironmentConfig,
        params: dict[str, Any],
        target: DatabaseTarget | None,
        incident_ref: str,
        report: Callable[[str], None],
    ) -> list[str]:
        """Delete the copy the drill's ``rds.pitr`` made and wait until it is gone."""
        from providers.rds.cleanup import delete_restored

        return delete_restored(env, params, target, incident_ref, report)
