"""Which channels rollbot answers mentions in: the configured ones, by id.

The config names channels (``#incidents``) or gives their ids (``C0123``); a mention
carries an id. Names are resolved with ``conversations.list`` (scope ``channels:read``)
and cached, so a mention in another channel gets one pointer to ``#incidents``
instead of an incident opened from wherever the bot happens to be invited.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError


class ChannelDirectory:
    """Configured channel names -> ids, refreshed every ``ttl_seconds``."""

    def __init__(
        self,
        client: WebClient,
        configured: Iterable[str],
        ttl_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.configured = [c.strip() for c in configured if c.strip()]
        self.ttl, self.clock = ttl_seconds, clock
        self._ids: set[str] = set()
        self._at: float | None = None
        self._lock = threading.Lock()

    def allows(self, channel_id: str | None) -> bool:
        """Is ``channel_id`` one of the configured channels? (Unknown: refresh once.)"""
        if not channel_id:
            return False
        if channel_id in self.configured or channel_id in self._current():
            return True
        # Unknown: the channel may be newly created; look again, at most once a minute.
        recent = self._at is not None and self.clock() - self._at < 60
        return not recent and channel_id in self._current(force=True)

    def _current(self, force: bool = False) -> set[str]:
        with self._lock:
            stale = self._at is None or self.clock() - self._at > self.ttl
            if force or stale:
                self._ids, self._at = self._resolve(), self.clock()
            return set(self._ids)

    def _resolve(self) -> set[str]:
        names = {c.removeprefix("#") for c in self.configured if c.startswith("#")}
        ids = {c for c in self.configured if not c.startswith("#")}
        if not names:
            return ids
        try:
            pages = self.client.conversations_list(
                types="public_channel,private_channel", exclude_archived=True, limit=1000
            )
            for page in pages:  # the SDK follows the cursor
                ids |= {c["id"] for c in page.get("channels", []) if c.get("name") in names}
        except SlackApiError:
            pass  # without the scope: only channels configured by id match
        return ids
