"""rollbot's Home tab: open incidents, who is on call now, the last drill and the next one.

Drawn by the worker when someone opens the tab (``app_home_opened``); everything on it is
what the store and PagerDuty say at that moment, so it is never stale for long.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select

from bot.config import Settings
from bot.models import AuditEvent, Incident
from bot.redact import redact
from handlers.slack.blocks import headline, thread_link

log = logging.getLogger(__name__)
QUARTERLY = "0 10 1 1,4,7,10 *"
ON_CALL_SECONDS = 60.0
DRILL_EVENT = "drill"  # the audit kind `rollbot drill` records its result under


@dataclass(frozen=True)
class HomeFacts:
    incidents: list[Incident]
    on_call: list[str] | None  # None: PagerDuty on-call look-up not configured
    last_drill: AuditEvent | None
    next_drill: datetime | None


_on_call_cache: tuple[float, list[str]] | None = None


def on_call_now(settings: Settings) -> list[str] | None:
    """Who PagerDuty says is on call for the configured policy (cached for a minute)."""
    global _on_call_cache
    pd = settings.pagerduty
    token = os.environ.get(pd.api_token_env or "") if pd.api_token_env else None
    if not token or not pd.escalation_policy_id:
        return None
    if _on_call_cache and time.monotonic() - _on_call_cache[0] < ON_CALL_SECONDS:
        return _on_call_cache[1]
    from providers.pagerduty.oncall import who_is_on_call

    try:
        people = who_is_on_call(token, pd.escalation_policy_id)
    except Exception as exc:  # the tab still shows the incidents
        return [f"(PagerDuty did not say: {redact(exc)})"]
    _on_call_cache = (time.monotonic(), people)
    return people


def next_drill(settings: Settings, now: datetime) -> datetime | None:
    reminders = getattr(settings, "reminders", None)
    line = getattr(reminders, "drill_cron", None) or QUARTERLY
    trigger = CronTrigger.from_crontab(line, timezone=settings.business_hours.timezone)
    return trigger.get_next_fire_time(None, now)


def gather(bot: Any, settings: Settings) -> HomeFacts:
    with bot.store.read() as session:
        last = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.kind == DRILL_EVENT)
            .order_by(AuditEvent.id.desc())
            .limit(1)
        ).first()
    now = datetime.now(UTC)
    return HomeFacts(bot.open_incidents(), on_call_now(settings), last, next_drill(settings, now))


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": redact(text)[:2900]}}


def home_view(facts: HomeFacts) -> dict[str, Any]:
    """The Home tab view (``views.publish``)."""
    shown = len(facts.incidents)
    more = f"\n…and {shown - 20} older (`@rollbot status`)" if shown > 20 else ""
    incidents = (
        "\n".join(
            f"• {headline(i)} — <{thread_link(i.chat_channel, i.chat_thread)}|thread>"
            for i in sorted(facts.incidents, key=lambda i: i.id, reverse=True)[:20]
        )
        or "No open incidents."
    )
    on_call = (
        "not configured ([pagerduty] api_token_env and escalation_policy_id)"
        if facts.on_call is None
        else ", ".join(facts.on_call) or "nobody"
    )
    drill = (
        f"{facts.last_drill.at:%Y-%m-%d %H:%M} UTC: {facts.last_drill.message}"
        if facts.last_drill
        else "no drill recorded yet (`rollbot drill`)"
    )
    due = f"{facts.next_drill:%Y-%m-%d %H:%M %Z}" if facts.next_drill else "not scheduled"
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "rollbot"}},
            _section(f"*Open incidents* (newest first)\n{incidents}{more}"),
            _section(f"*On call now:* {on_call}"),
            _section(f"*Last drill:* {drill}\n*Next drill due:* {due}"),
        ],
    }
