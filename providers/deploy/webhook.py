"""Calling the team's deploy webhook: the body template filled in, header values read from
the environment variables the config names, the answer's status and body tail kept.

A webhook that rolls an app back is not idempotent, so a call is never retried here: a
failure is reported and people decide (retrying the step calls it again).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import httpx

from bot.config import WebhookConfig
from bot.errors import RollbotError
from bot.redact import redact, register_secret

TAIL_CHARS = 1500
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    tail: str  # the end of the body, redacted

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def line(self, what: str) -> str:
        said = f": {self.tail}" if self.tail else ""
        return f"{what} webhook answered {self.status}{said}"


def fill(template: Any, fields: dict[str, str]) -> Any:
    """The body template with ``{name}`` replaced in every string (JSON values stay JSON)."""
    if isinstance(template, str):
        return _PLACEHOLDER.sub(lambda m: fields.get(m.group(1), m.group(0)), template)
    if isinstance(template, dict):
        return {k: fill(v, fields) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, fields) for v in template]
    return template


def headers_for(hook: WebhookConfig) -> dict[str, str]:
    """Header values from their environment variables (each registered as a secret)."""
    headers = {"Content-Type": "application/json", "User-Agent": "rollbot"}
    for name, env_var in hook.headers_env.items():
        value = os.environ.get(env_var)
        if not value:
            raise RollbotError(f"the webhook's {name} header needs ${env_var}, which is not set")
        register_secret(value)
        headers[name] = value
    return headers


def call(hook: WebhookConfig, fields: dict[str, str]) -> WebhookAnswer:
    """One call; RollbotError when it cannot be made or gets no answer."""
    body = json.dumps(fill(hook.body, fields))
    try:
        response = httpx.request(
            hook.method,
            hook.url,
            content=body,
            headers=headers_for(hook),
            timeout=hook.timeout_seconds,
        )
    except httpx.HTTPError as exc:
        what = f"{type(exc).__name__}: {exc}"
        raise RollbotError(f"{hook.method} {hook.url}: no answer ({what})") from None
    tail = redact(response.text[-TAIL_CHARS:].strip())
    return WebhookAnswer(response.status_code, tail)
