"""Delivering outbox notices to the devops channel, and what the deliverer needs from Slack
(the thread link, a line in the thread when a page could not be sent)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from bot.errors import ProviderError
from bot.models import Incident, OutboxItem
from bot.notify import Audience, Notice, Notifier
from bot.outbox import Deliverer
from bot.redact import redact
from handlers.runtime import Runtime
from handlers.slack.blocks import thread_link
from handlers.slack.poster import SlackPoster

log = logging.getLogger(__name__)
THREAD_WAIT = timedelta(seconds=30)

EMOJI = {
    "opened": ":rotating_light:",
    "approval_waiting": ":hourglass:",
    "step_failed": ":x:",
    "check_failed": ":warning:",
    "done": ":white_check_mark:",
    "acknowledged": ":eyes:",
    "resolved": ":white_check_mark:",
    "cancelled": ":no_entry_sign:",
    "reminder": ":alarm_clock:",
    "check_result": ":chart_with_upwards_trend:",
}


def mention(slack_id: str | None) -> str:
    """``<@U..>`` for a user, ``<!subteam^S..>`` for a user group."""
    if not slack_id:
        return ""
    return f"<!subteam^{slack_id}> " if slack_id.startswith("S") else f"<@{slack_id}> "


class DevopsChannel:
    """``bot.notify.Notifier`` for the devops channel."""

    audiences: tuple[Audience, ...] = ("devops",)

    def __init__(self, poster: SlackPoster, channel: str) -> None:
        self.poster = poster
        self.channel = channel

    def deliver(self, notice: Notice) -> None:
        thread = f" — <{notice.link}|thread>" if notice.link else ""
        text = f"{EMOJI.get(notice.kind, '')} {mention(notice.mention)}{notice.summary}{thread}"
        if self.poster.post(self.channel, text.strip()) is None:
            raise ProviderError(f"Slack did not take the notice for {self.channel}")


class IncidentThread:
    """``bot.notify.Notifier`` for the incident's own thread (results after its card)."""

    audiences: tuple[Audience, ...] = ("thread",)

    def __init__(self, poster: SlackPoster, place: Callable[[int], tuple[str, str] | None]):
        self.poster = poster
        self.place = place  # incident id -> (channel, thread ts), None without a thread

    def deliver(self, notice: Notice) -> None:
        where = self.place(notice.incident_id)
        if where is None:
            return  # a CLI incident has no thread: its audit trail holds the line
        text = f"{EMOJI.get(notice.kind, '')} {notice.summary}".strip()
        if self.poster.post(where[0], text, thread_ts=where[1]) is None:
            raise ProviderError(f"Slack did not take the line for {notice.ref}'s thread")


def deliverer(runtime: Runtime, poster: SlackPoster, extra: list[Notifier]) -> Deliverer:
    bot = runtime.bot

    def place(incident_id: int) -> tuple[str, str] | None:
        incident = bot.get(incident_id)
        if incident.chat_channel and incident.chat_thread:
            return incident.chat_channel, incident.chat_thread
        return None

    def link_for(incident: Incident) -> str | None:
        if not incident.chat_thread:
            return None
        return thread_link(incident.chat_channel, incident.chat_thread)

    def tell_thread(incident_id: int, text: str) -> None:
        where = place(incident_id)
        if where is not None:
            poster.post(where[0], text, thread_ts=where[1])

    def not_yet(incident: Incident, row: OutboxItem) -> bool:
        """A Slack incident's notices wait (a little) for its thread, so they can link to it."""
        young = bot.clock() - row.created_at < THREAD_WAIT
        return incident.source.startswith("slack") and not incident.chat_message and young

    notifiers: list[Notifier] = [
        DevopsChannel(poster, runtime.settings.slack.devops_channel),
        IncidentThread(poster, place),
    ]
    return Deliverer(
        bot.store,
        [*notifiers, *extra],
        bot.clock,
        link_for=link_for,
        tell_thread=tell_thread,
        not_yet=not_yet,
    )


def deliver_until(stop: threading.Event, deliver: Deliverer, every: float = 1.0) -> None:
    """The worker's delivery loop: its own thread, so a slow PagerDuty never delays work."""
    while not stop.wait(every):
        try:
            deliver.deliver_due()
        except Exception as exc:  # a broken store or notifier must not end the loop
            log.warning("notice delivery skipped: %s", redact(exc))
