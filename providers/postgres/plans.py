"""What each runbook method means on PostgreSQL: the steps, in order.

Registered with the core (``bot.methods.register_provider``) for ``postgres`` and, until
their own providers exist, for the PostgreSQL-compatible platforms (Neon, RDS, Cloud SQL):
there forward-fix, pg_dump restore, triage and app rollback run as on PostgreSQL, and
their own methods (branch rollback, PITR) say plainly that they are not built yet.
Destructive methods start with a verified safety snapshot, taken by a step of its own or
by the destructive step itself (``safety_snapshot = "own"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.config import EnvironmentConfig
from bot.errors import RollbotError
from bot.methods import StepSpec


def _verify() -> StepSpec:
    return StepSpec(
        "postgres.verify", "Verify the database (migrations table, row counts, smoke queries)"
    )


def _safety() -> StepSpec:
    return StepSpec("postgres.snapshot", "Take a verified safety snapshot", {"purpose": "safety"})


def _restore_params(options: dict[str, Any]) -> dict[str, Any]:
    """A restore step's params from the method options (what people picked)."""
    params = {"snapshot": options.get("snapshot"), "before": options.get("restore_to")}
    params.update(
        {k: True for k in ("accept_other_source", "no_owner", "no_acl") if options.get(k)}
    )
    return params


def _forward_fix(env: EnvironmentConfig, options: dict[str, Any]) -> list[StepSpec]:
    """Review the drafted reverse, then the team's commands (only from the config), then verify.

    Without a configured migrate command the built-in drizzle applier runs the pending
    entries (what the drill uses). The reverse may drop what the bad migration added, with
    whatever was written to it since: a safety snapshot comes first.
    """
    review_params = {"entry": options["migration"]} if options.get("migration") else {}
    steps = [
        StepSpec(
            "drizzle.review_reverse",
            "Identify the problematic migration and draft its reverse",
            review_params,
        ),
        _safety(),
    ]
    if env.commands.generate:
        steps.append(StepSpec("command", "Run `generate`", {"command": "generate"}))
    if env.commands.migrate:
        steps.append(StepSpec("command", "Run `migrate`", {"command": "migrate"}))
    else:
        steps.append(
            StepSpec("drizzle.apply", "Apply the pending migrations with the built-in applier")
        )
    if env.commands.integration_tests:
        steps.append(
            StepSpec("command", "Run `integration_tests`", {"command": "integration_tests"})
        )
    return [*steps, _verify()]


def _restore(title: str, options: dict[str, Any]) -> list[StepSpec]:
    if options.get("into_new"):
        raise RollbotError(
            "a PostgreSQL restore always goes into a new database and swaps it in, keeping "
            "the old one as <name>_before_restore_<time>; --into-new is for platforms "
            "that restore in place (Neon)"
        )
    return [StepSpec("postgres.restore", title, _restore_params(options)), _verify()]


def _stuck_migration(options: dict[str, Any]) -> list[StepSpec]:
    # No safety snapshot: a dump would wait on the same lock the migration waits on.
    return [
        StepSpec(
            "postgres.terminate_blocker",
            "End the session blocking the migration (root of the blocking tree)",
            {k: options[k] for k in ("pid", "backend_start") if options.get(k)},
        )
    ]


def _undo_restore(options: dict[str, Any]) -> list[StepSpec]:
    kept = options.get("kept")
    if not kept:
        raise RollbotError("undo needs the kept database's name; nothing was planned")
    return [
        StepSpec(
            "postgres.undo_restore",
            f"Swap the kept database {kept} back in (the current state is kept in turn)",
            {"kept": kept},
        ),
        _verify(),
    ]


def app_rollback_step(env: EnvironmentConfig) -> StepSpec:
    """The deploy webhook when one is configured, else the team's app_rollback command."""
    title = "Roll back the app deployment (database kept)"
    if env.deploy.app_rollback_webhook is not None:
        return StepSpec("deploy.app_rollback", title)
    return StepSpec("command", title, {"command": "app_rollback"})


@dataclass(frozen=True)
class PostgresPlans:
    """``bot.methods.Provider`` for PostgreSQL (and what is PostgreSQL on the others)."""

    name: str = "postgres"
    config_model: type[Any] | None = None

    def steps_for(
        self, method_id: str, env: EnvironmentConfig, options: dict[str, Any]
    ) -> list[StepSpec]:
        if method_id == "forward_fix":
            return _forward_fix(env, options)
        if method_id == "pitr":
            if self.name != "postgres":
                raise RollbotError(
                    f"point-in-time restore on {self.name} is not built yet; use pg_dump restore "
                    "(or the platform's console, as the runbook describes)"
                )
            if env.pitr is not None:  # real PITR from archived WAL (pgBackRest)
                from providers.pgbackrest.plans import pitr_steps

                return pitr_steps(options)
            # No [pitr] tool configured: the local stand-in restores the newest verified
            # snapshot taken before the chosen time, and its plan says so.
            return _restore(
                "Restore the newest snapshot taken before the restore point (no [pitr] tool "
                "configured: a stand-in, writes after that snapshot are lost)",
                options,
            )
        if method_id == "pg_dump_restore":
            return _restore("Restore from a pg_dump snapshot", options)
        if method_id == "dev_reset":
            return [
                _safety(),
                StepSpec(
                    "postgres.reset", "Drop and re-create the database, re-run the migrations"
                ),
                _verify(),
            ]
        if method_id == "stuck_migration":
            return _stuck_migration(options)
        if method_id == "undo_restore":
            return _undo_restore(options)
        if method_id == "app_rollback":
            return [app_rollback_step(env), _verify()]
        if method_id == "neon_branch":
            if self.name != "neon":
                raise RollbotError(
                    f"Neon branch rollback needs a Neon environment; {env.name!r} uses {self.name}"
                )
            raise RollbotError("Neon branch rollback is not built yet; see the runbook's steps")
        raise RollbotError(f"method {method_id!r} has no step plan on {self.name}")
