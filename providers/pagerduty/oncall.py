"""Who is on call now for rollbot's escalation policy, in words a thread can show.

REST API v2 ``GET /oncalls`` with ``earliest=true``: one entry per user and escalation
level (a person on two schedules of the same level is listed once).
"""

from __future__ import annotations

from typing import Any

from pagerduty import Error, RestApiV2Client

from bot.redact import register_secret
from providers.pagerduty.common import build, error_from


def who_is_on_call(
    token: str,
    escalation_policy_id: str,
    *,
    api_url: str | None = None,
    verify: str | bool = True,
    retry_wait: float | None = None,
) -> list[str]:
    """Names with their level, lowest level first: ``["Ada Lovelace (level 1)", ...]``.

    Raises PagerDutyError (a ProviderError, one line, no token) when PagerDuty fails.
    """
    register_secret(token)
    doing = f"the on-call list of escalation policy {escalation_policy_id}"
    client = build(RestApiV2Client, token, api_url, verify, retry_wait)
    try:
        with client:
            oncalls = client.list_all(
                "/oncalls",
                params={"escalation_policy_ids": [escalation_policy_id], "earliest": "true"},
            )
    except Error as exc:
        raise error_from(exc, doing) from None
    return readable(oncalls)


def readable(oncalls: list[dict[str, Any]]) -> list[str]:
    """``"Name (level N)"`` per person and level, ordered by level then name."""
    seen: set[tuple[int, str]] = set()
    for entry in oncalls:
        user = entry.get("user") or {}
        name = user.get("summary") or user.get("name") or user.get("id") or "someone"
        level = entry.get("escalation_level")
        seen.add((level if isinstance(level, int) else 0, str(name)))
    return [f"{name} (level {level})" if level else name for level, name in sorted(seen)]
