"""What the acknowledging side does with a validated Slack payload: record it, then answer.

A handler here does no core work and no Slack call before its answer: it reads
the validated payload (``handlers.slack.payloads``), writes one inbox row
(``bot.inbox``) and returns the ack's body. The work happens in ``rollbot
worker`` (``handlers.slack.worker``), another process, so nothing it does can
starve an ack. When the row cannot be written (state database down) or the
backlog is over its high-water mark, the person is told at once that nothing
was recorded: in the ack itself where Slack shows it (slash command, modal),
else with an ephemeral message.

:meth:`Acknowledger.dispatch` is the one router for both transports: the HTTP
front door (``handlers.slack.gate``) calls it directly, Socket Mode through
Bolt (``handlers.slack.app``). Going through Bolt over HTTP too cost as much CPU
per ack as everything else the app does (docs/architecture.md item 54).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_sdk import WebClient

from bot.config import Settings
from bot.errors import RollbotError
from bot.inbox import Acceptance, Inbox, NewRequest
from bot.redact import redact, scrub_user_text
from handlers.slack import interactions
from handlers.slack.flows import parse_rollback_text
from handlers.slack.metadata import ActionValue, checklist_incident
from handlers.slack.payloads import (
    MAX_TEXT,
    BlockActions,
    HomeCallback,
    MentionCallback,
    SlashCommand,
    UrlVerification,
    ViewSubmission,
)
from handlers.slack.poster import SlackPoster

log = logging.getLogger(__name__)
Reply = dict[str, Any] | None  # the ack's JSON body; None: an empty 200
COMMAND = "/rollback"
VIEW_CALLBACK = re.compile(r"^rb_")
MENTION = re.compile(r"<@[A-Z0-9]+>")
HELP = (
    "Try `@rollbot rollback <environment> <description>` or `@rollbot status` "
    "(or the `/rollback` command)."
)
NOT_RECORDED = {
    Acceptance.UNAVAILABLE: (
        ":warning: rollbot cannot reach its database right now, so this was *not recorded* "
        "and nothing will happen. Try again in a minute (or use `rollbot shell`)."
    ),
    Acceptance.FULL: (
        ":warning: rollbot has too much unfinished work queued, so this was *not recorded* "
        "and nothing will happen. Try again in a minute (or use `rollbot shell`)."
    ),
}
ACK_FAILED = ":warning: rollbot could not take this request; nothing was recorded. Try again."


def _ephemeral(text: str) -> Reply:
    return {"text": text, "response_type": "ephemeral"}


def _too_long(text: str) -> str:
    return f":warning: that is {len(text):,} characters; rollbot reads at most {MAX_TEXT:,}."


def _ordering_id(action_id: str, value: str | None, block_id: str) -> tuple[int | None, str]:
    """The incident the click claims (for ordering only; the worker checks it) and its nonce."""
    if action_id.startswith(("rb_tick:", "rb_source:")):
        which = action_id.partition(":")[2] if action_id.startswith("rb_tick:") else "source"
        try:  # unsealed here: the worker checks the seal
            return checklist_incident(block_id, which, None), ""
        except RollbotError:
            return None, ""
    try:
        decoded = ActionValue.decode(value)
    except RollbotError:
        return None, ""
    return decoded.incident_id, decoded.nonce


class Notices:
    """Ephemeral notices sent after an ack (Slack ignores an interaction ack's body)."""

    def __init__(self, client: WebClient) -> None:
        self.poster = SlackPoster(client)
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="rollbot-notice")

    def tell(self, channel: str | None, user: str, text: str, thread_ts: str | None = None) -> None:
        self.pool.submit(self.poster.ephemeral, channel, user, text, thread_ts)


class Acknowledger:
    """One acknowledging process's handlers, one per payload kind rollbot acts on."""

    def __init__(self, settings: Settings, inbox: Inbox, client: WebClient) -> None:
        self.settings = settings
        self.inbox = inbox
        self.notices = Notices(client)

    def route(self, payload: object) -> Callable[[Any], Reply] | None:
        """The handler for ``payload``, or None: rollbot does not act on it (an empty ack)."""
        if isinstance(payload, SlashCommand):
            return self.command
        if isinstance(payload, BlockActions):
            matched = interactions.ACTION_ID.match(payload.action.action_id)
            return self.click if matched else None
        if isinstance(payload, ViewSubmission):
            return self.submit if VIEW_CALLBACK.match(payload.view.callback_id) else None
        if isinstance(payload, MentionCallback):
            return self.mention
        if isinstance(payload, HomeCallback):
            return self.home
        if isinstance(payload, UrlVerification):
            return self.url_verification
        return None

    def dispatch(self, payload: object) -> Reply:
        """The ack's body for a validated payload; never raises (the body may be anything)."""
        handler = self.route(payload)
        if handler is None:
            return None
        try:
            return handler(payload)
        except Exception as exc:
            log.error("Slack ack handler error: %s", redact(f"{type(exc).__name__}: {exc}")[:300])
            return _ephemeral(ACK_FAILED) if isinstance(payload, SlashCommand) else None

    def _record(
        self, action: str, key: str, actor: str, incident: int | None, **payload: Any
    ) -> Acceptance:
        return self.inbox.accept(NewRequest(key, "slack", action, actor, incident, payload))

    def url_verification(self, challenge: UrlVerification) -> Reply:
        return {"challenge": challenge.challenge}

    def command(self, cmd: SlashCommand) -> Reply:
        if cmd.command != COMMAND:
            return _ephemeral(f":warning: rollbot answers `{COMMAND}` only.")
        if len(cmd.text) > MAX_TEXT:
            return _ephemeral(_too_long(cmd.text))
        try:
            environment, description = parse_rollback_text(cmd.text, self.settings)
        except RollbotError as exc:
            return _ephemeral(f":warning: {exc}")
        result = self._record(
            "rollback",
            f"slack:command:{cmd.trigger_id or uuid.uuid4().hex}",
            cmd.user_id,
            None,
            environment=environment,
            description=scrub_user_text(description),
            channel=cmd.channel_id,
        )
        if result.recorded:
            return _ephemeral(":inbox_tray: Opening an incident…")
        return _ephemeral(NOT_RECORDED[result])

    def click(self, click: BlockActions) -> Reply:
        action, user = click.action, click.user.id
        channel = click.channel.id if click.channel else None
        thread_ts = click.message.thread_ts if click.message else None
        interaction = interactions.button(action.action_id)
        if interaction is None:
            self.notices.tell(channel, user, "That button is not one of rollbot's.", thread_ts)
            return None
        incident, nonce = _ordering_id(action.action_id, action.value, action.block_id)
        once = nonce or action.action_ts or uuid.uuid4().hex
        result = self._record(
            interaction.name,
            f"slack:click:{once}:{user}:{action.action_id}",
            user,
            incident,
            action_id=action.action_id,
            value=action.value,
            block_id=action.block_id,
            selected=[o.value for o in action.selected_options or []],
            selected_option=action.selected_option.value if action.selected_option else None,
            selected_time=action.selected_date_time,
            channel=channel,
            message_channel=click.container.channel_id if click.container else None,
            message_ts=click.container.message_ts if click.container else None,
            thread_ts=thread_ts,
            ephemeral=bool(click.container and click.container.is_ephemeral),
            trigger_id=click.trigger_id,
        )
        if not result.recorded:
            self.notices.tell(channel, user, NOT_RECORDED[result], thread_ts)
        return None

    def submit(self, submission: ViewSubmission) -> Reply:
        view, user = submission.view, submission.user.id
        interaction = interactions.VIEWS.get(view.callback_id)
        root_cause = view.text("root_cause")
        if interaction is None:
            return {"response_action": "clear"}
        if not root_cause.strip():
            return {
                "response_action": "errors",
                "errors": {"root_cause": "Describe the root cause"},
            }
        try:
            incident: int | None = ActionValue.decode(view.private_metadata).incident_id
        except RollbotError:
            incident = None
        result = self._record(
            interaction.name,
            f"slack:view:{view.id}:{view.hash}",
            user,
            incident,
            metadata=view.private_metadata,
            root_cause=scrub_user_text(root_cause),
            notes=scrub_user_text(view.text("notes")),
        )
        if result.recorded:
            return None
        return {"response_action": "errors", "errors": {"root_cause": NOT_RECORDED[result]}}

    def mention(self, callback: MentionCallback) -> Reply:
        mention = callback.event
        user, channel = mention.user, mention.channel
        thread = mention.thread_ts or mention.ts
        words = MENTION.sub("", mention.text).strip()
        verb, _, rest = words.partition(" ")
        key = f"slack:event:{callback.event_id}"
        result = Acceptance.RECORDED
        if len(words) > MAX_TEXT:
            self.notices.tell(channel, user, _too_long(words), thread)
        elif verb.lower() == "status":
            result = self._record(
                "status", key, user, None, channel=channel, thread_ts=thread, via="mention"
            )
        elif verb.lower() == "rollback":
            try:
                environment, description = parse_rollback_text(rest, self.settings)
            except RollbotError as exc:
                self.notices.tell(channel, user, f":warning: {exc}", thread)
            else:
                result = self._record(
                    "rollback",
                    key,
                    user,
                    None,
                    environment=environment,
                    description=scrub_user_text(description),
                    channel=channel,
                    thread_ts=thread,
                    via="mention",
                )
        else:
            self.notices.tell(channel, user, HELP, thread)
        if not result.recorded:
            self.notices.tell(channel, user, NOT_RECORDED[result], thread)
        return None

    def home(self, home: HomeCallback) -> Reply:
        """Anyone may look: the Home tab shows what #incidents shows, drawn by the worker."""
        if home.event.tab == "home":
            self._record("home", f"slack:event:{home.event_id}", home.event.user, None)
        return None
