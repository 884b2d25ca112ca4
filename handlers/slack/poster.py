"""Posting into Slack without ever losing incident state.

The core commits first; posting comes after. A failed post (Slack down after
the client's own retries) is logged, redacted, and reported as ``None`` so the
caller carries on: the next refresh re-renders from the store.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient

from bot.redact import redact

log = logging.getLogger(__name__)


class SlackPoster:
    def __init__(self, client: WebClient) -> None:
        self.client = client

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            response = getattr(self.client, method)(**kwargs)
            return dict(response.data) if isinstance(response.data, dict) else {}
        except Exception as exc:  # SlackApiError, connection errors after retries
            log.warning("slack %s failed: %s", method, redact(str(exc)).splitlines()[0][:300])
            return None

    def post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> dict[str, Any] | None:
        kwargs: dict[str, Any] = {"channel": channel, "text": redact(text)}
        if blocks is not None:
            kwargs["blocks"] = blocks
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        return self._call("chat_postMessage", **kwargs)

    def upload(
        self, channel: str, thread_ts: str | None, filename: str, content: str, title: str
    ) -> dict[str, Any] | None:
        """A text file in the thread (files.getUploadURLExternal, then completeUploadExternal)."""
        return self._call(
            "files_upload_v2",
            channel=channel,
            thread_ts=thread_ts,
            filename=filename,
            content=redact(content),
            title=title,
        )

    def update(
        self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> dict[str, Any] | None:
        kwargs: dict[str, Any] = {"channel": channel, "ts": ts, "text": redact(text)}
        if blocks is not None:
            kwargs["blocks"] = blocks
        return self._call("chat_update", **kwargs)

    def ephemeral(
        self,
        channel: str | None,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        if not channel:
            log.warning("cannot tell %s (no channel): %s", user, redact(text))
            return None
        kwargs: dict[str, Any] = {"channel": channel, "user": user, "text": redact(text)}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if blocks is not None:
            kwargs["blocks"] = blocks
        return self._call("chat_postEphemeral", **kwargs)

    def publish_home(self, user: str, view: dict[str, Any]) -> dict[str, Any] | None:
        return self._call("views_publish", user_id=user, view=view)

    def open_modal(self, trigger_id: str, view: dict[str, Any]) -> dict[str, Any] | None:
        return self._call("views_open", trigger_id=trigger_id, view=view)
