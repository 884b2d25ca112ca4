"""Composition root: settings + step kinds + store + executor, for every adapter.

The core (``bot/``) knows no provider; this is where providers' step kinds are
registered and crash recovery runs, once per process start.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from bot.approval import GroupDirectory
from bot.config import Settings, load_settings
from bot.executor import Executor
from bot.service import Rollbot


def register_provider_steps() -> None:
    """Import the modules that register provider step kinds."""
    import providers.steps  # noqa: F401


@dataclass
class Runtime:
    settings: Settings
    bot: Rollbot
    executor: Executor


def start_runtime(
    config: str | Path | Settings | None = None, *, directory: GroupDirectory | None = None
) -> Runtime:
    settings = config if isinstance(config, Settings) else load_settings(config)
    register_provider_steps()
    bot = Rollbot.open(settings, directory=directory)
    executor = Executor(bot)
    executor.recover()
    return Runtime(settings, bot, executor)


def default_actor() -> str:
    return os.environ.get("ROLLBOT_ACTOR") or getpass.getuser()
