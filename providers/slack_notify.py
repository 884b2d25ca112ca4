"""A one-way notice to the devops channel (migrations, deploys), without Bolt.

Why separate from the Slack app: ``rollbot migrate`` runs in CI and deploy
scripts where no bot process is up; a bot token is enough to post. A notice
is telemetry, never a reason to fail a migration: errors are logged and
reported as ``False``.
"""

from __future__ import annotations

import logging
import os

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.config import Settings
from bot.errors import ProviderError
from bot.notify import Notice
from bot.redact import redact, register_secret

log = logging.getLogger(__name__)

TOKEN_ENV = "SLACK_BOT_TOKEN"
API_URL_ENV = "ROLLBOT_SLACK_API_URL"
DEFAULT_API_URL = "https://slack.com/api/"


def slack_configured() -> bool:
    return bool(os.environ.get(TOKEN_ENV))


def _client(token: str) -> WebClient:
    url = os.environ.get(API_URL_ENV) or DEFAULT_API_URL
    return WebClient(
        token=token,
        base_url=url if url.endswith("/") else url + "/",
        timeout=10,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=1),
            RateLimitErrorRetryHandler(max_retry_count=2),
        ],
    )


def notify_devops(channel: str, text: str) -> bool:
    """Post ``text`` (redacted) to ``channel`` when ``$SLACK_BOT_TOKEN`` is set.

    Returns True when Slack accepted it, False when Slack is not configured or
    the post failed (the failure is logged, secret-free).
    """
    token = os.environ.get(TOKEN_ENV)
    if not token:
        return False
    register_secret(token)
    try:
        _client(token).chat_postMessage(channel=channel, text=redact(text), mrkdwn=True)
    except SlackApiError as exc:
        log.warning("devops notice not posted to %s: %s", channel, exc.response.get("error"))
        return False
    except (SlackClientError, OSError) as exc:
        log.warning("devops notice not posted to %s: %s", channel, redact(exc))
        return False
    return True


class DevopsNotifier:
    """``bot.notify.Notifier`` for the devops channel from a CLI process (a bot token is
    enough; the Slack worker has its own, with thread links)."""

    audiences = ("devops",)

    def __init__(self, channel: str) -> None:
        self.channel = channel

    @classmethod
    def from_settings(cls, settings: Settings) -> DevopsNotifier | None:
        return cls(settings.slack.devops_channel) if slack_configured() else None

    def deliver(self, notice: Notice) -> None:
        if not notify_devops(self.channel, notice.summary):
            raise ProviderError(f"Slack did not take the notice for {self.channel}")
