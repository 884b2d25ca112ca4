"""The Events API v2's behaviour: what PagerDuty checks in an event, and its alerts.

PagerDuty keeps one alert per (routing key, dedup_key) while it is open: a second trigger
with the same key is folded into it (and leaves an acknowledged alert acknowledged); an
acknowledge or resolve for a key without an open alert is accepted and changes nothing;
a trigger after the alert was resolved opens a new one.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
ROUTING_KEY = re.compile(r"^[0-9a-zA-Z]{32}$")
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255


@dataclass
class Alert:
    routing_key: str
    dedup_key: str
    status: str  # triggered, acknowledged, resolved
    summary: str
    severity: str
    events: int = 1  # events folded into this alert, the trigger included
    history: list[str] = field(default_factory=list)  # event actions, in order


def invalid_event(body: Any) -> list[str]:
    """What PagerDuty answers 400 "invalid event" for (empty: the event is accepted)."""
    if not isinstance(body, dict):
        return ["Event object is not a JSON object"]
    errors = []
    if not ROUTING_KEY.match(str(body.get("routing_key", ""))):
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = body.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is missing or invalid")
    dedup = body.get("dedup_key")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is required for acknowledge and resolve events")
    if isinstance(dedup, str) and len(dedup) > MAX_DEDUP_KEY:
        errors.append(f"'dedup_key' is longer than {MAX_DEDUP_KEY} characters")
    if action == "trigger":
        errors += _invalid_payload(body.get("payload"))
    return errors


def _invalid_payload(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = [
        f"'payload.{f}' is missing or blank" for f in ("summary", "source") if not payload.get(f)
    ]
    if len(str(payload.get("summary", ""))) > MAX_SUMMARY:
        errors.append(f"'payload.summary' is longer than {MAX_SUMMARY} characters")
    if payload.get("severity") not in SEVERITIES:
        errors.append(f"'payload.severity' must be one of {', '.join(SEVERITIES)}")
    return errors


class Alerts:
    """The alerts of every service the fake knows, by (routing key, dedup_key).

    ``current`` holds the latest alert per key; ``opened`` every alert ever opened, so a
    re-trigger after a resolve shows as a second alert.
    """

    def __init__(self) -> None:
        self.current: dict[tuple[str, str], Alert] = {}
        self.opened: list[Alert] = []

    def apply(self, event: dict[str, Any]) -> str:
        """Apply a valid event; the dedup_key PagerDuty answers with."""
        action = event["event_action"]
        key = event.get("dedup_key") or uuid.uuid4().hex
        ident = (event["routing_key"], key)
        alert = self.current.get(ident)
        if action == "trigger":
            self._trigger(ident, alert, event["payload"])
        elif alert is not None and alert.status != "resolved":
            alert.events += 1
            alert.history.append(action)
            if action == "resolve" or alert.status == "triggered":
                alert.status = "resolved" if action == "resolve" else "acknowledged"
        return key

    def _trigger(self, ident: tuple[str, str], alert: Alert | None, payload: dict) -> None:
        if alert is not None and alert.status != "resolved":
            alert.events += 1
            alert.history.append("trigger")
            return
        made = Alert(*ident, "triggered", payload["summary"], payload["severity"])
        made.history.append("trigger")
        self.current[ident] = made
        self.opened.append(made)
