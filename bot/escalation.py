"""Who is told about an incident event, and how: the runbook's emergency contacts.

In business hours: ``#devops-team``, mentioning the database admin when something needs
attention. After hours: on-call through PagerDuty, and the CTO's escalation for production
only. The devops channel hears about every event either way (it is the team's record).
A pure function of the event, the incident, the time and the configuration.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.config import Settings
from bot.notify import Audience, Notice, NoticeKind

ATTENTION: frozenset[NoticeKind] = frozenset(
    {"opened", "approval_waiting", "step_failed", "check_failed"}
)
ENDS: frozenset[NoticeKind] = frozenset({"resolved", "cancelled"})
PAGED_ORDER: tuple[Audience, ...] = ("oncall", "cto")
DEVOPS_ONLY: frozenset[NoticeKind] = frozenset({"done", "reminder"})  # never paged
THREAD_ONLY: frozenset[NoticeKind] = frozenset({"check_result"})  # ``outbox.queue_thread``


@dataclass(frozen=True)
class Event:
    """What happened to which incident (the fields a notice needs)."""

    kind: NoticeKind
    incident_id: int
    ref: str
    environment: str | None
    tier: str | None
    summary: str
    details: dict[str, Any]


def pagers_for(tier: str | None, now: datetime, settings: Settings) -> tuple[Audience, ...]:
    """Whom to page now: nobody in business hours; on-call after hours, and the CTO too
    for production."""
    if settings.business_hours.is_open(now):
        return ()
    return ("oncall", "cto") if tier == "production" else ("oncall",)


def dedup_key(event: Event, audience: Audience) -> str:
    """One PagerDuty alert per incident and routing key, whatever is retried."""
    return f"rollbot/{event.environment or event.tier or 'unknown'}/{event.ref}/{audience}"


def notices_for(
    event: Event,
    now: datetime,
    settings: Settings,
    *,
    can_page: Collection[Audience],
    paged: Collection[Audience],
    force_page: bool = False,
) -> list[Notice]:
    """The notices for ``event``. ``can_page``: audiences with a routing key configured;
    ``paged``: audiences already paged for this incident (an end resolves exactly those);
    ``force_page``: page on-call even in business hours (nobody answered the devops channel)."""
    in_hours = settings.business_hours.is_open(now)
    wanted = pagers_for(event.tier, now, settings) if event.kind in ATTENTION else ()
    if force_page and event.kind in ATTENTION and "oncall" not in wanted:
        wanted = ("oncall", *wanted)
    pages = [a for a in wanted if a in can_page]
    unpaged = [a for a in wanted if a not in can_page]
    summary = event.summary
    if unpaged:
        summary += f" (after hours: no PagerDuty routing key for {', '.join(unpaged)}, not paged)"
    mention = settings.slack.database_admin if in_hours and event.kind in ATTENTION else None
    out = [_notice(event, "devops", summary, mention)]
    out += [_notice(event, a, event.summary) for a in pages]
    if event.kind in ENDS or event.kind == "acknowledged":
        out += [_notice(event, a, event.summary) for a in PAGED_ORDER if a in paged]
    return out


def _notice(event: Event, audience: Audience, summary: str, mention: str | None = None) -> Notice:
    return Notice(
        kind=event.kind,
        audience=audience,
        incident_id=event.incident_id,
        ref=event.ref,
        environment=event.environment or "",
        tier=event.tier or "",
        summary=summary,
        key=dedup_key(event, audience),
        details=event.details,
        mention=mention,
    )
