"""Composition root: settings + step kinds + store + executor, for every adapter.

The core (``bot/``) knows no provider; this is where providers' step kinds are
registered and crash recovery runs, once per process start.
"""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bot.approval import GroupDirectory
from bot.config import Settings, load_settings
from bot.errors import NotAuthorizedError
from bot.executor import Executor
from bot.notify import Notifier
from bot.outbox import Deliverer
from bot.redact import redact
from bot.service import Rollbot

log = logging.getLogger(__name__)


def register_provider_steps() -> None:
    """Import the modules that register provider step kinds, planners and config sections."""
    import providers.steps  # noqa: F401


def load_config(path: str | Path | None = None) -> Settings:
    """The settings, validated with every provider's section model (registered first)."""
    register_provider_steps()
    return load_settings(path)


def paging_notifiers(settings: Settings) -> list[Notifier]:
    """PagerDuty, when a routing key is set (the devops channel is the Slack worker's)."""
    from providers.pagerduty.notifier import PagerDutyNotifier

    pager = PagerDutyNotifier.from_settings(settings)
    return [pager] if pager is not None else []


@dataclass
class Runtime:
    settings: Settings
    bot: Rollbot
    executor: Executor


def start_runtime(
    config: str | Path | Settings | None = None, *, directory: GroupDirectory | None = None
) -> Runtime:
    settings = config if isinstance(config, Settings) else load_config(config)
    register_provider_steps()
    bot = Rollbot.open(settings, directory=directory)
    executor = Executor(bot)
    executor.recover()
    runtime = Runtime(settings, bot, executor)
    _STARTED.append(runtime)
    return runtime


_STARTED: list[Runtime] = []


def deliver_pending_notices() -> None:
    """Before a CLI command exits: send the pages and devops notices its changes queued
    (no Slack worker may be running). Never fails the command: what is not sent stays
    queued for the next delivery, by any process."""
    from providers.slack_notify import DevopsNotifier

    while _STARTED:
        runtime = _STARTED.pop()
        notifiers: list[Notifier] = [*paging_notifiers(runtime.settings)]
        devops = DevopsNotifier.from_settings(runtime.settings)
        if devops is not None:
            notifiers.append(devops)
        try:
            Deliverer(runtime.bot.store, notifiers, runtime.bot.clock).deliver_due()
        except Exception as exc:
            log.warning("notices not delivered now (they stay queued): %s", redact(exc))
        finally:
            runtime.bot.store.dispose()


def os_user() -> str:
    return getpass.getuser()


def cli_actor(runtime: Runtime, claimed: str | None = None) -> str:
    """Who a CLI command acts as: the OS user, or an identity ``[cli.identities]`` maps it to.

    ``--as`` (or ``$ROLLBOT_ACTOR``) is a claim; it is honoured only for the OS user
    itself or an identity mapped to it, and a refused claim is audited.
    """
    user = os_user()
    claim = claimed or os.environ.get("ROLLBOT_ACTOR") or None
    allowed = runtime.settings.cli.identities.get(user, ())
    if claim is None:
        return allowed[0] if len(allowed) == 1 else user
    if claim == user or claim in allowed:
        return claim
    runtime.bot.note(
        None,
        user,
        "refused",
        f"Refused a CLI command as {claim}: OS user {user} is not mapped to it in [cli.identities]",
        {"claimed": claim, "os_user": user},
    )
    raise NotAuthorizedError(
        f"OS user {user!r} may not act as {claim!r}; map it in [cli.identities] "
        f"of {runtime.settings.source}"
    )
