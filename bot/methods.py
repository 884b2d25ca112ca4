"""From a runbook method to the concrete steps for one environment.

The runbook says *what* (forward-fix, PITR, ...); the environment's provider says *which
steps* that means on its platform (``Provider.steps_for``, registered by the composition
root). The core names no provider: it checks the runbook's own rules and asks. Destructive
methods always start with a verified safety snapshot, which the executor enforces from
the steps' declared results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.config import EnvironmentConfig, register_provider_section
from bot.errors import RollbotError
from bot.runbook import RUNBOOK


@dataclass(frozen=True)
class StepSpec:
    kind: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    """One platform's planner: the steps each runbook method means there, in order, and
    the model of its configuration section (None when it takes none)."""

    name: str
    config_model: type[Any] | None

    def steps_for(
        self, method_id: str, env: EnvironmentConfig, options: dict[str, Any]
    ) -> list[StepSpec]:
        """The steps; RollbotError (saying why, and what else to use) when it cannot run."""
        ...


_PROVIDERS: dict[str, Provider] = {}


def register_provider(provider: Provider) -> Provider:
    """Make a provider plannable and its ``provider = "<name>"`` setting valid."""
    _PROVIDERS[provider.name] = provider
    register_provider_section(provider.name, provider.config_model)
    return provider


def provider_for(env: EnvironmentConfig) -> Provider:
    try:
        return _PROVIDERS[env.provider]
    except KeyError:
        known = ", ".join(sorted(_PROVIDERS)) or "none"
        raise RollbotError(
            f"environment {env.name!r} uses provider {env.provider!r}, which this rollbot "
            f"build does not include (available: {known})"
        ) from None


# Procedures rollbot offers after a method ran, outside the runbook's decision tree.
FOLLOW_UPS = {"undo_restore": "Undo the restore (swap the kept database back)"}


def method_title(method_id: str) -> str:
    """A runbook method's title, or a follow-up procedure's."""
    return FOLLOW_UPS.get(method_id) or RUNBOOK.method(method_id).title


def plan_steps(
    method_id: str, env: EnvironmentConfig, options: dict[str, Any] | None = None
) -> list[StepSpec]:
    """The steps ``method_id`` takes in ``env``, from its provider; RollbotError if it
    cannot run there. The runbook's own rules (tiers, configured commands) are checked here,
    whatever the provider."""
    if method_id not in FOLLOW_UPS:
        RUNBOOK.method(method_id)  # unknown method -> NotFoundError
    if method_id == "dev_reset" and env.tier != "development":
        raise RollbotError(f"development reset is refused for {env.name!r}: its tier is {env.tier}")
    if method_id == "app_rollback" and not env.commands.app_rollback:
        raise RollbotError(
            f"environment {env.name!r} has no app_rollback command configured "
            f'([environments.{env.name}.commands] app_rollback = "...")'
        )
    steps = list(provider_for(env).steps_for(method_id, env, options or {}))
    # The runbook's "after a rollback: run smoke tests, monitor error rates", on any platform.
    rollbacks = ("pitr", "pg_dump_restore", "neon_branch", "app_rollback", "forward_fix")
    if method_id in (*rollbacks, "undo_restore") and env.checks.any_configured():
        steps.append(StepSpec("checks.post_rollback", "Smoke checks and the error-rate watch"))
    return steps
