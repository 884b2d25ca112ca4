"""From a runbook method to the concrete steps for one environment.

The runbook says *what* (forward-fix, PITR, ...); this module says *which
steps* that means for the environment's provider. Destructive methods always
start with a verified safety snapshot, taken by a step of its own or by the
destructive step itself (``safety_snapshot = "own"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.config import EnvironmentConfig
from bot.errors import RollbotError
from bot.runbook import RUNBOOK


@dataclass(frozen=True)
class StepSpec:
    kind: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)


def _verify() -> StepSpec:
    return StepSpec(
        "postgres.verify", "Verify the database (migrations table, row counts, smoke queries)"
    )


def _forward_fix(env: EnvironmentConfig, options: dict[str, Any]) -> list[StepSpec]:
    """Review the drafted reverse, then the team's commands (only from the config), then verify.

    Without a configured migrate command the built-in drizzle applier runs the
    pending entries (what the drill uses).
    """
    review_params = {"entry": options["migration"]} if options.get("migration") else {}
    steps = [
        StepSpec(
            "drizzle.review_reverse",
            "Identify the problematic migration and draft its reverse",
            review_params,
        )
    ]
    # The reverse may drop what the bad migration added, with whatever was written to it since.
    steps.append(
        StepSpec("postgres.snapshot", "Take a verified safety snapshot", {"purpose": "safety"})
    )
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


def _restore_params(options: dict[str, Any]) -> dict[str, Any]:
    """A restore step's params from the method options (what people picked)."""
    params = {"snapshot": options.get("snapshot"), "before": options.get("restore_to")}
    params.update(
        {k: True for k in ("accept_other_source", "no_owner", "no_acl") if options.get(k)}
    )
    return params


def _pitr(env: EnvironmentConfig, options: dict[str, Any]) -> list[StepSpec]:
    before = options.get("restore_to")
    if env.provider == "postgres":
        # Plain PostgreSQL has no PITR API: the local stand-in restores the newest verified
        # snapshot taken before the chosen time (default: before the newest migration).
        return [
            StepSpec(
                "postgres.restore",
                "Restore the newest snapshot taken before the restore point",
                _restore_params(options),
            ),
            _verify(),
        ]
    return [
        StepSpec(
            f"{env.provider}.pitr",
            f"Point-in-time restore on {env.provider}",
            {"restore_to": before},
        ),
        StepSpec(
            "manual",
            "Point the application at the restored database",
            {
                "title": "Point the application at the restored database",
                "instructions": "update DATABASE_URL in the deployment environment and redeploy",
            },
        ),
        _verify(),
    ]


# Procedures rollbot offers after a method ran, outside the runbook's decision tree.
FOLLOW_UPS = {"undo_restore": "Undo the restore (swap the kept database back)"}


def method_title(method_id: str) -> str:
    """A runbook method's title, or a follow-up procedure's."""
    return FOLLOW_UPS.get(method_id) or RUNBOOK.method(method_id).title


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


def plan_steps(
    method_id: str, env: EnvironmentConfig, options: dict[str, Any] | None = None
) -> list[StepSpec]:
    """The steps ``method_id`` takes in ``env``; RollbotError if it cannot run there."""
    options = options or {}
    if method_id == "undo_restore":
        return _undo_restore(options)
    RUNBOOK.method(method_id)  # unknown method -> NotFoundError
    if method_id == "forward_fix":
        return _forward_fix(env, options)
    if method_id == "pitr":
        return _pitr(env, options)
    if method_id == "pg_dump_restore":
        return [
            StepSpec(
                "postgres.restore",
                "Restore from a pg_dump snapshot",
                _restore_params(options),
            ),
            _verify(),
        ]
    if method_id == "dev_reset":
        if env.tier != "development":
            raise RollbotError(
                f"development reset is refused for {env.name!r}: its tier is {env.tier}"
            )
        return [
            StepSpec("postgres.snapshot", "Take a verified safety snapshot", {"purpose": "safety"}),
            StepSpec("postgres.reset", "Drop and re-create the database, re-run the migrations"),
            _verify(),
        ]
    if method_id == "stuck_migration":
        # No safety snapshot: a dump would wait on the same lock the migration waits on.
        return [
            StepSpec(
                "postgres.terminate_blocker",
                "End the session blocking the migration (root of the blocking tree)",
                {k: options[k] for k in ("pid", "backend_start") if options.get(k)},
            )
        ]
    if method_id == "neon_branch":
        if env.provider != "neon":
            raise RollbotError(
                f"Neon branch rollback needs a Neon environment; {env.name!r} uses {env.provider}"
            )
        return [
            StepSpec(
                "neon.branch_rollback", "Make the branch from before the migration the default"
            ),
            _verify(),
        ]
    if method_id == "app_rollback":
        if not env.commands.app_rollback:
            raise RollbotError(
                f"environment {env.name!r} has no app_rollback command configured "
                f'([environments.{env.name}.commands] app_rollback = "...")'
            )
        return [
            StepSpec(
                "command",
                "Roll back the app deployment (database kept)",
                {"command": "app_rollback"},
            ),
            _verify(),
        ]
    raise RollbotError(f"method {method_id!r} has no step plan")
