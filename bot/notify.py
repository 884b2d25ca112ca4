"""What rollbot tells people outside the incident thread, and the seam for who delivers it.

The core decides *what* is said and *to whom* (``bot.escalation``), as ``Notice`` rows
written in the same transaction as the change they announce (the outbox); notifiers in
``providers/`` (Slack's devops channel, PagerDuty) deliver them. A notifier must be safe
to call twice with the same notice: delivery is retried after a crash between sending and
marking it sent, so each notice carries a stable ``key`` (PagerDuty's ``dedup_key``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# What happened. "opened", "approval_waiting", "step_failed", "check_failed" ask for
# attention; "acknowledged" stops the paging; "done", "resolved", "cancelled" end it.
NoticeKind = Literal[
    "opened",
    "approval_waiting",
    "step_failed",
    "check_failed",
    "done",
    "acknowledged",
    "resolved",
    "cancelled",
    "reminder",  # a nudge (e.g. the post-mortem is due): the devops channel only
    "check_result",  # a post-rollback check's reading: the incident's own thread only
]
# Who: the devops channel (business hours), on-call through PagerDuty (after hours), the
# CTO's escalation (production, after hours), and the incident's own thread (results that
# arrive after its card stopped changing, e.g. the error-rate watch's readings).
Audience = Literal["devops", "oncall", "cto", "thread"]


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    audience: Audience
    incident_id: int | None  # None: a notice for the team (a reminder of the drill)
    ref: str  # INC-12, or "" for the team
    environment: str
    tier: str
    summary: str  # one line, already redacted
    key: str  # stable per incident and audience: repeated deliveries are one alert
    link: str | None = None  # the incident thread
    details: dict[str, Any] = field(default_factory=dict)  # environment, method, requester...
    mention: str | None = None  # devops: the database admin to mention (<@U..> / <!subteam^S..>)

    @property
    def severity(self) -> str:
        """PagerDuty's severity from the tier (production is critical)."""
        return {"production": "critical", "staging": "warning"}.get(self.tier, "info")


class Notifier(Protocol):
    """Delivers notices for one audience or more; raises to have the delivery retried."""

    audiences: tuple[Audience, ...]

    def deliver(self, notice: Notice) -> None: ...
