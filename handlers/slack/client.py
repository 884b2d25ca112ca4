"""The Web API client and the user-group directory built on it.

The client retries politely on its own (429 with Retry-After, 5xx, dropped
connections), so callers never loop; ``ROLLBOT_SLACK_API_URL`` points it at
another server (a local fake in tests, a proxy in locked-down networks).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

DEFAULT_API_URL = "https://slack.com/api/"


def api_url_from_env() -> str:
    url = os.environ.get("ROLLBOT_SLACK_API_URL") or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


def make_web_client(token: str | None, base_url: str | None = None) -> WebClient:
    """A WebClient that retries rate limits and server errors instead of losing a post."""
    return WebClient(
        token=token,
        base_url=base_url or api_url_from_env(),
        timeout=10,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=3),
        ],
    )


class SlackGroupDirectory:
    """``bot.approval.GroupDirectory`` over ``usergroups.users.list``, cached briefly.

    Approvals are rare and group membership changes rarely, but a stale cache must
    not let a removed member approve for long: entries live ``ttl_seconds``.
    """

    def __init__(
        self,
        client: WebClient,
        ttl_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self.clock = clock
        self._cache: dict[str, tuple[float, set[str]]] = {}
        self._lock = threading.Lock()

    def members(self, group_id: str) -> set[str]:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(group_id)
            if hit and now - hit[0] < self.ttl:
                return set(hit[1])
        response = self.client.usergroups_users_list(usergroup=group_id)
        users = set(response.get("users") or [])
        with self._lock:
            self._cache[group_id] = (now, users)
        return set(users)
