"""From a runbook method to the concrete steps for one environment.

The runbook says *what* (forward-fix, PITR, ...); the environment's provider says *which
steps* that means on its platform (``Provider.steps_for``, registered by the composition
root). The core names no provider: it checks the runbook's own rules and asks. Destructive
methods always start with a verified safety snapshot, which the executor enforces from
the steps' declared results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.config import EnvironmentConfig, register_provider_section
from bot.errors import RollbotError
from bot.runbook import RUNBOOK
from bot.steps import DatabaseTarget


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

    # Optional, for providers whose steps move the database (a new branch or instance):
    # ``connection_url(env, target: DatabaseTarget) -> str``, used by ``target_url``.


_PROVIDERS: dict[str, Provider] = {}


def register_provider(provider: Provider) -> Provider:
    """Make a provider plannable and its ``provider = "<name>"`` setting valid."""
    _PROVIDERS[provider.name] = provider
    register_provider_section(provider.name, provider.config_model)
    return provider


def target_url(env: EnvironmentConfig, target: DatabaseTarget) -> str:
    """The connection string of where a step said the database now lives, credentials
    included (for a verify, or the repoint's environment variable: never for display).
    A provider that moves databases implements ``connection_url(env, target)``."""
    if target.url_env:
        url = os.environ.get(target.url_env)
        if not url:
            raise RollbotError(f"${target.url_env} (the URL of {target.label}) is not set")
        return url
    connection_url = getattr(provider_for(env), "connection_url", None)
    if connection_url is None:
        raise RollbotError(
            f"provider {env.provider!r} cannot say how to connect to {target.label}; "
            "point the app at it by hand"
        )
    return connection_url(env, target)


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
    if method_id == "app_rollback" and not (
        env.commands.app_rollback or env.deploy.app_rollback_webhook
    ):
        raise RollbotError(
            f"environment {env.name!r} has no app rollback configured: a command "
            f'([environments.{env.name}.commands] app_rollback = "...") or a webhook '
            f"([environments.{env.name}.deploy.app_rollback_webhook])"
        )
    steps = list(provider_for(env).steps_for(method_id, env, options or {}))
    # The runbook's "after a rollback: run smoke tests, monitor error rates", on any platform.
    rollbacks = ("pitr", "pg_dump_restore", "neon_branch", "app_rollback", "forward_fix")
    if method_id in (*rollbacks, "undo_restore") and env.checks.any_configured():
        steps.append(StepSpec("checks.post_rollback", "Smoke checks and the error-rate watch"))
    return steps
