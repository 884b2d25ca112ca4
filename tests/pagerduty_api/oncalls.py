"""The REST API's ``GET /oncalls``: who the fake says is on call, as PagerDuty shapes it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

ORIGIN = "https://api.pagerduty.com"
WEB = "https://rollbot-test.pagerduty.com"


@dataclass(frozen=True)
class OnCall:
    """One on-call entry: a user at a level of an escalation policy, from a schedule."""

    name: str
    level: int
    escalation_policy_id: str
    schedule: str = "Primary rotation"
    start: datetime = datetime(2026, 1, 1, 9, tzinfo=UTC)
    hours: int = 24 * 7

    @property
    def user_id(self) -> str:
        return _ident("P", self.name)

    @property
    def schedule_id(self) -> str:
        return _ident("S", self.schedule)


def _ident(prefix: str, name: str) -> str:
    """A stable PagerDuty-looking id (``PXXXXXX``) for a name."""
    return prefix + hashlib.sha1(name.encode()).hexdigest()[:6].upper()


def _reference(kind: str, path: str, ident: str, summary: str) -> dict[str, Any]:
    return {
        "id": ident,
        "type": f"{kind}_reference",
        "summary": summary,
        "self": f"{ORIGIN}/{path}/{ident}",
        "html_url": f"{WEB}/{path}/{ident}",
    }


def as_json(entry: OnCall) -> dict[str, Any]:
    """The spec's ``Oncall`` object (``end`` always a time: the spec does not allow null)."""
    policy = entry.escalation_policy_id
    return {
        "user": _reference("user", "users", entry.user_id, entry.name),
        "schedule": _reference("schedule", "schedules", entry.schedule_id, entry.schedule),
        "escalation_policy": _reference(
            "escalation_policy", "escalation_policies", policy, f"Policy {policy}"
        ),
        "escalation_level": entry.level,
        "start": entry.start.isoformat(),
        "end": (entry.start + timedelta(hours=entry.hours)).isoformat(),
    }


def select(
    entries: list[OnCall],
    *,
    policy_ids: list[str],
    user_ids: list[str],
    earliest: bool,
) -> list[OnCall]:
    """The entries the filters keep; ``earliest``: one per (policy, level, user)."""
    kept = [
        e
        for e in entries
        if (not policy_ids or e.escalation_policy_id in policy_ids)
        and (not user_ids or e.user_id in user_ids)
    ]
    kept.sort(key=lambda e: (e.escalation_policy_id, e.level, e.start))
    if not earliest:
        return kept
    seen: set[tuple[str, int, str]] = set()
    first = []
    for e in kept:
        combination = (e.escalation_policy_id, e.level, e.user_id)
        if combination not in seen:
            seen.add(combination)
            first.append(e)
    return first


def page(entries: list[OnCall], *, limit: int, offset: int, total: bool) -> dict[str, Any]:
    """A classic (offset) pagination page, as the spec's ``Pagination`` shapes it."""
    chosen = entries[offset : offset + limit]
    return {
        "oncalls": [as_json(e) for e in chosen],
        "limit": limit,
        "offset": offset,
        "more": offset + limit < len(entries),
        "total": len(entries) if total else None,
    }
