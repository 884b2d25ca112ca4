"""Pages on-call and the CTO: rollbot's notices as PagerDuty Events API v2 events.

One alert per incident and audience: every event carries the notice's ``key`` as its
``dedup_key``, so a notice delivered twice (the outbox retries after a crash between
sending and marking sent) folds into the same alert, and the end of an incident resolves
the very alert its start triggered.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pagerduty import Error, EventsApiV2Client

from bot.config import Settings
from bot.notify import Audience, Notice, NoticeKind
from bot.redact import redact, redact_obj, register_secret
from providers.pagerduty.common import PagerDutyError, build, error_from

EVENTS_URL_ENV = "ROLLBOT_PAGERDUTY_EVENTS_URL"  # e.g. https://events.eu.pagerduty.com
PAGED: tuple[Audience, ...] = ("oncall", "cto")
MAX_SUMMARY = 1024  # the Events API's limit on payload.summary

ACTIONS: dict[NoticeKind, str] = {
    "opened": "trigger",
    "approval_waiting": "trigger",
    "step_failed": "trigger",
    "check_failed": "trigger",
    "acknowledged": "acknowledge",
    "done": "resolve",
    "resolved": "resolve",
    "cancelled": "resolve",
}


class PagerDutyNotifier:
    """Delivers the notices of the audiences it has a routing key for ("oncall", "cto")."""

    def __init__(
        self,
        routing_keys: Mapping[str, str],
        *,
        events_url: str | None = None,
        verify: str | bool = True,
        retry_wait: float | None = None,
    ) -> None:
        """``verify``: True (system trust, ``$SSL_CERT_FILE``), False, or a CA bundle path.
        ``retry_wait``: seconds before the client's one retry (tests make it short)."""
        keys = {a: k for a, k in routing_keys.items() if k}
        unknown = sorted(set(keys) - set(PAGED))
        if unknown:
            raise ValueError(f"PagerDuty pages {', '.join(PAGED)}, not {', '.join(unknown)}")
        for key in keys.values():
            register_secret(key)
        self.audiences: tuple[Audience, ...] = tuple(keys)  # type: ignore[arg-type]
        self._clients = {
            a: build(EventsApiV2Client, k, events_url, verify, retry_wait) for a, k in keys.items()
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> PagerDutyNotifier | None:
        """From the routing keys in the variables ``[pagerduty]`` names; None when unset."""
        pd = settings.pagerduty
        named = {"oncall": pd.routing_key_env, "cto": pd.cto_routing_key_env}
        keys = {a: os.environ.get(env or "", "") for a, env in named.items() if env}
        keys = {a: k for a, k in keys.items() if k}
        if not keys:
            return None
        return cls(keys, events_url=os.environ.get(EVENTS_URL_ENV) or None)

    def deliver(self, notice: Notice) -> None:
        """Send the event for ``notice``; raises PagerDutyError (``retryable`` says if the
        outbox should try again). Safe to repeat: the dedup_key makes it one alert."""
        client = self._clients.get(notice.audience)
        if client is None:
            raise PagerDutyError(
                f"no PagerDuty routing key for {notice.audience!r}", retryable=False
            )
        action = ACTIONS.get(notice.kind)
        if action is None:
            raise PagerDutyError(
                f"no PagerDuty event for a {notice.kind!r} notice", retryable=False
            )
        doing = f"the {action} of {notice.ref} ({notice.audience})"
        try:
            if action == "trigger":
                client.trigger(**trigger_fields(notice))
            else:
                client.send_event(action, dedup_key=notice.key)
        except Error as exc:
            raise error_from(exc, doing) from None

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def trigger_fields(notice: Notice) -> dict[str, Any]:
    """``EventsApiV2Client.trigger``'s arguments: what a responder sees on the alert."""
    details = {
        **notice.details,
        "ref": notice.ref,
        "environment": notice.environment,
        "tier": notice.tier,
    }
    fields: dict[str, Any] = {
        "summary": _summary(notice),
        "source": f"rollbot/{notice.environment}",
        "dedup_key": notice.key,
        "severity": notice.severity,
        "payload": {"component": notice.environment, "group": notice.tier},
        "custom_details": redact_obj(details),
    }
    if notice.link:
        fields["links"] = [{"href": notice.link, "text": "Incident thread"}]
    return fields


def _summary(notice: Notice) -> str:
    text = redact(notice.summary)  # redacted by the core already; a key learned since is not
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"
