"""From an environment's ``[neon]`` section to a client, its branch and rollbot's names."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from bot.config import EnvironmentConfig
from bot.errors import ConfigError
from bot.steps import Reporter
from providers.neon.client import Branch, NeonClient
from providers.neon.config import NeonConfig

PRE_MIGRATION_PREFIX = "pre-migrate-"
RESTORED_PREFIX = "restored-"


def neon_config(env: EnvironmentConfig) -> NeonConfig:
    if not isinstance(env.section, NeonConfig):
        raise ConfigError(f"environment {env.name!r} is not a Neon environment")
    return env.section


def client_for(env: EnvironmentConfig) -> NeonClient:
    """A client with the API key from the variable the config names (never the file)."""
    cfg = neon_config(env)
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise ConfigError(
            f"environment {env.name!r}: ${cfg.api_key_env} is not set (it must hold the "
            "Neon API key)"
        )
    return NeonClient(cfg.api_url, key, cfg.project_id, max_wait_seconds=cfg.api_wait_seconds)


def environment_branch(client: NeonClient, env: EnvironmentConfig) -> Branch:
    """The environment's branch: the configured one, else the project's default."""
    cfg = neon_config(env)
    if cfg.branch_id:
        return client.get_branch(cfg.branch_id)
    branches = client.list_branches()
    for branch in branches:
        if branch.default:
            return branch
    raise ConfigError(
        f"Neon project {cfg.project_id} has no default branch; set "
        f"[environments.{env.name}.neon] branch_id"
    )


def stamp(moment: datetime) -> str:
    """``YYYYMMDD-HHMMSS`` in UTC, as the runbook names restored branches."""
    return moment.astimezone(UTC).strftime("%Y%m%d-%H%M%S")


def label(branch: Branch) -> str:
    return f"Neon branch {branch.name} ({branch.id})"


def wait_for(
    client: NeonClient, operation_ids: list[str], env: EnvironmentConfig, report: Reporter
) -> None:
    """Poll recorded operations (by id: after a restart only the ids are known) until done."""
    operations = [client.operation(op_id) for op_id in operation_ids]
    client.wait(operations, poll_seconds=neon_config(env).poll_seconds, on_progress=report)
