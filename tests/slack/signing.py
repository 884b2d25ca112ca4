"""Requests signed with Slack's real v0 scheme, posted to a running app."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

SIGNING_SECRET = "test-signing-secret-0123456789"


def signature(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class Reply:
    status: int
    body: str
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def post_signed(
    url: str,
    body: str,
    content_type: str,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: float | None = None,
    forged: bool = False,
    retry_num: int | None = None,
    raw_timestamp: str | None = None,
) -> Reply:
    ts = str(int(timestamp if timestamp is not None else time.time()))
    sig = signature("not-the-secret" if forged else secret, ts, body)
    if raw_timestamp is not None:
        ts = raw_timestamp
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sig,
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return Reply(resp.status, resp.read().decode(), time.perf_counter() - start)
    except urllib.error.HTTPError as err:
        return Reply(err.code, err.read().decode(), time.perf_counter() - start)


def command_body(
    user: str, text: str, channel: str = "C0INCIDENTS", trigger: str = ""
) -> dict[str, str]:
    return {
        "token": "legacy",
        "team_id": "T0TEST",
        "team_domain": "test",
        "channel_id": channel,
        "channel_name": "incidents",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/rollback",
        "text": text,
        "api_app_id": "A0ROLLBOT",
        "response_url": "https://hooks.slack.invalid/commands/1",
        "trigger_id": trigger or f"trig.{time.monotonic_ns()}",
    }


def block_action_payload(
    user: str, action: dict[str, Any], channel: str, message_ts: str, thread_ts: str | None = None
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": "T0TEST", "domain": "test"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0TEST"},
        "api_app_id": "A0ROLLBOT",
        "token": "legacy",
        "trigger_id": f"trig.{time.monotonic_ns()}",
        "channel": {"id": channel, "name": "incidents"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "message": {"ts": message_ts, "thread_ts": thread_ts, "type": "message"},
        "response_url": "https://hooks.slack.invalid/actions/1",
        "actions": [{**action, "action_ts": f"{time.time():.6f}"}],
    }


def event_body(event: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {
        "token": "legacy",
        "team_id": "T0TEST",
        "api_app_id": "A0ROLLBOT",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": "T0TEST", "user_id": "U0ROLLBOT", "is_bot": True}],
    }


def form(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})
