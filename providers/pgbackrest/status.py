"""What ``rollbot pitr status`` (and ``rollbot migrate``'s archive check) report: pgBackRest's
``check`` and ``info``, the backups, the restorable window and archive warnings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from bot.config import EnvironmentConfig, PitrConfig
from bot.errors import ProviderError, RollbotError
from providers.pgbackrest.tool import PgBackRest
from providers.pgbackrest.window import Window, read_window


@dataclass
class PitrStatus:
    environment: str
    stanza: str
    window: Window | None = None
    problems: list[str] = field(default_factory=list)  # check failed, no stanza

    @property
    def warnings(self) -> list[str]:
        return self.problems + (self.window.warnings if self.window else [])

    def lines(self) -> list[str]:
        head = f"{self.environment}: pgBackRest stanza {self.stanza}"
        out = [head] + (self.window.lines() if self.window else [])
        return out + [f"PROBLEM: {p}" for p in self.problems]


def pitr_config(env: EnvironmentConfig) -> PitrConfig:
    if env.pitr is None:
        raise RollbotError(
            f"environment {env.name!r} has no PITR tool configured "
            f'([environments.{env.name}.pitr] tool = "pgbackrest", stanza = "...")'
        )
    return env.pitr


def status(env: EnvironmentConfig, run_check: bool = True) -> PitrStatus:
    pitr = pitr_config(env)
    tool = PgBackRest.of(pitr)
    result = PitrStatus(env.name, pitr.stanza)
    try:
        info = tool.info()
    except ProviderError as exc:
        result.problems.append(str(exc))
        return result
    if run_check:
        try:
            tool.check()
        except ProviderError as exc:
            result.problems.append(f"archiving is broken: {exc}")
    url = env.database_url() if os.environ.get(env.database_url_env) else None
    result.window = read_window(info, url, pitr.archive_lag_seconds)
    return result


def require_healthy_archive(env: EnvironmentConfig) -> list[str]:
    """Before a migration: refuse when archiving is broken or lagging (no way back then)."""
    found = status(env)
    if found.warnings:
        raise RollbotError(
            f"{env.name}: WAL archiving is not healthy, so a PITR could not undo this migration: "
            + "; ".join(found.warnings)
            + " (see `rollbot pitr status --env "
            + env.name
            + "`)"
        )
    return found.lines()
