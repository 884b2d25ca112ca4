"""What each runbook method means on Neon. Branch rollback and point-in-time restore use
Neon's API; the rest (forward-fix, pg_dump restore, triage, app rollback) is PostgreSQL
and runs as there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.config import EnvironmentConfig
from bot.errors import RollbotError
from bot.methods import StepSpec
from bot.steps import DatabaseTarget
from providers.neon.config import NeonConfig
from providers.postgres.plans import PostgresPlans


def _verify(options: dict[str, Any]) -> StepSpec:
    params = {"expected_head": options["expected_head"]} if options.get("expected_head") else {}
    return StepSpec("neon.verify", "Verify the database on its branch", params)


@dataclass(frozen=True)
class NeonPlans:
    """``bot.methods.Provider`` for Neon."""

    name: str = "neon"
    config_model: type[Any] | None = NeonConfig

    def steps_for(
        self, method_id: str, env: EnvironmentConfig, options: dict[str, Any]
    ) -> list[StepSpec]:
        if method_id == "neon_branch":
            return [
                StepSpec(
                    "neon.branch_rollback",
                    "Make the branch from before the migration the default"
                    if options.get("make_default", True)
                    else "Move the environment to the branch from before the migration",
                    {
                        "snapshot": options.get("snapshot"),
                        "make_default": options.get("make_default", True),
                    },
                ),
                StepSpec("deploy.repoint", "Point the app at that branch and redeploy"),
                _verify(options),
            ]
        if method_id == "pitr":
            into_new = bool(options.get("into_new"))
            restore = StepSpec(
                "neon.pitr",
                "Restore the branch as it was at the chosen time into a new branch"
                if into_new
                else "Restore the branch to the chosen time (its current state kept)",
                {"snapshot": None, "before": options.get("restore_to"), "into_new": into_new},
            )
            repoint = [StepSpec("deploy.repoint", "Point the app at the new branch and redeploy")]
            return [restore, *(repoint if into_new else []), _verify(options)]
        return PostgresPlans(self.name, NeonConfig).steps_for(method_id, env, options)

    def connection_url(self, env: EnvironmentConfig, target: DatabaseTarget) -> str:
        """The connection string of the branch a step moved the database to."""
        from providers.neon.access import client_for, neon_config

        branch_id = target.ref.get("branch_id")
        if not branch_id:
            raise RollbotError(f"{target.label} names no Neon branch")
        cfg = neon_config(env)
        with client_for(env) as client:
            return client.connection_uri(
                branch_id, database_name=cfg.database_name, role_name=cfg.role_name
            )

    def pre_migration_snapshot(self, env: EnvironmentConfig, tag: str) -> str:
        """Before ``rollbot migrate``: a pre-migration branch (retention prunes old ones)."""
        from providers.neon.premigrate import create_pre_migration_branch

        branch, pruned = create_pre_migration_branch(env, tag)
        gone = f"; retention deleted {', '.join(pruned)}" if pruned else ""
        return f"Neon branch {branch.name} ({branch.id}){gone}"
