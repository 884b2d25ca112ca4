"""The Bolt app on the acknowledging side: validate, record in the inbox, then ack.

A listener here does no core work and no Slack call before its ack: it reads
the validated payload (``handlers.slack.payloads``), writes one inbox row
(``bot.inbox``) and acknowledges. The work happens in ``rollbot worker``
(``handlers.slack.worker``), another process, so nothing it does can starve
an ack. When the row cannot be written (state database down) or the backlog is
over its high-water mark, the person is told at once that nothing was
recorded: in the ack itself where Slack shows it (slash command, modal), else
with an ephemeral message.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.authorization import AuthorizeResult
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
    Mention,
    SlashCommand,
    ViewSubmission,
)
from handlers.slack.poster import SlackPoster

log = logging.getLogger(__name__)
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


class Notices:
    """Ephemeral notices sent after an ack (Slack ignores an interaction ack's body)."""

    def __init__(self, client: WebClient) -> None:
        self.poster = SlackPoster(client)
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="rollbot-notice")

    def tell(self, channel: str | None, user: str, text: str, thread_ts: str | None = None) -> None:
        self.pool.submit(self.poster.ephemeral, channel, user, text, thread_ts)


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


def build_app(
    settings: Settings,
    inbox: Inbox,
    *,
    client: WebClient,
    signing_secret: str | None = None,
    socket_mode: bool = False,
) -> App:
    """The Slack app for one acknowledging process. ``client`` is made by ``make_web_client``."""
    if not socket_mode and not signing_secret:
        raise RollbotError("SLACK_SIGNING_SECRET is not set; HTTP mode needs it to verify requests")
    notices = Notices(client)
    token = client.token

    def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    app = App(
        client=client,
        signing_secret=signing_secret or "unused-in-socket-mode",
        authorize=authorize,
        process_before_response=True,
        # The front door (handlers.slack.gate) has verified the signature already.
        request_verification_enabled=False,
        token_verification_enabled=False,
        raise_error_for_unhandled_request=True,
        name="rollbot",
    )

    def record(
        action: str, key: str, actor: str, incident: int | None, **payload: Any
    ) -> Acceptance:
        return inbox.accept(NewRequest(key, "slack", action, actor, incident, payload))

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse:
        # Never post anything from here: the body may be anything at all.
        if type(error).__name__ != "BoltUnhandledRequestError":
            log.error("Slack listener error: %s", redact(f"{type(error).__name__}: {error}")[:300])
        if isinstance(body, dict) and "command" in body:
            return BoltResponse(status=200, body={"response_type": "ephemeral", "text": ACK_FAILED})
        return BoltResponse(status=200, body="")

    @app.command("/rollback")
    def on_rollback(ack: Callable[..., None], body: dict[str, Any]) -> None:
        cmd = SlashCommand.model_validate(body)
        if len(cmd.text) > MAX_TEXT:
            ack(text=_too_long(cmd.text), response_type="ephemeral")
            return
        try:
            environment, description = parse_rollback_text(cmd.text, settings)
        except RollbotError as exc:
            ack(text=f":warning: {exc}", response_type="ephemeral")
            return
        result = record(
            "rollback",
            f"slack:command:{cmd.trigger_id or uuid.uuid4().hex}",
            cmd.user_id,
            None,
            environment=environment,
            description=scrub_user_text(description),
            channel=cmd.channel_id,
        )
        if result.recorded:
            ack(text=":inbox_tray: Opening an incident…", response_type="ephemeral")
        else:
            ack(text=NOT_RECORDED[result], response_type="ephemeral")

    @app.action(interactions.ACTION_ID)
    def on_click(ack: Callable[..., None], body: dict[str, Any]) -> None:
        click = BlockActions.model_validate(body)
        action, user = click.action, click.user.id
        channel = click.channel.id if click.channel else None
        message_ts = click.container.message_ts if click.container else None
        message_channel = click.container.channel_id if click.container else None
        thread_ts = click.message.thread_ts if click.message else None
        interaction = interactions.button(action.action_id)
        if interaction is None:
            ack()
            notices.tell(channel, user, "That button is not one of rollbot's.", thread_ts)
            return
        incident, nonce = _ordering_id(action.action_id, action.value, action.block_id)
        key = (
            f"slack:click:{nonce}:{user}:{action.action_id}"
            if nonce
            else f"slack:click:{action.action_ts or uuid.uuid4().hex}:{user}:{action.action_id}"
        )
        result = record(
            interaction.name,
            key,
            user,
            incident,
            action_id=action.action_id,
            value=action.value,
            block_id=action.block_id,
            selected=[o.value for o in action.selected_options or []],
            selected_option=action.selected_option.value if action.selected_option else None,
            selected_time=action.selected_date_time,
            channel=channel,
            message_channel=message_channel,
            message_ts=message_ts,
            thread_ts=thread_ts,
            ephemeral=bool(click.container and click.container.is_ephemeral),
            trigger_id=click.trigger_id,
        )
        ack()
        if not result.recorded:
            notices.tell(channel, user, NOT_RECORDED[result], thread_ts)

    @app.view(re.compile(r"^rb_"))
    def on_submit(ack: Callable[..., None], body: dict[str, Any]) -> None:
        submission = ViewSubmission.model_validate(body)
        view, user = submission.view, submission.user.id
        interaction = interactions.VIEWS.get(view.callback_id)
        root_cause = view.text("root_cause")
        if interaction is None:
            ack(response_action="clear")
            return
        if not root_cause.strip():
            ack(response_action="errors", errors={"root_cause": "Describe the root cause"})
            return
        try:
            incident: int | None = ActionValue.decode(view.private_metadata).incident_id
        except RollbotError:
            incident = None
        result = record(
            interaction.name,
            f"slack:view:{view.id}:{view.hash}",
            user,
            incident,
            metadata=view.private_metadata,
            root_cause=scrub_user_text(root_cause),
            notes=scrub_user_text(view.text("notes")),
        )
        if result.recorded:
            ack()
        else:
            ack(response_action="errors", errors={"root_cause": NOT_RECORDED[result]})

    @app.event("app_mention")
    def on_mention(ack: Callable[..., None], body: dict[str, Any], event: dict[str, Any]) -> None:
        mention = Mention.model_validate(event)
        user, channel = mention.user, mention.channel
        thread = mention.thread_ts or mention.ts
        words = MENTION.sub("", mention.text).strip()
        verb, _, rest = words.partition(" ")
        key = f"slack:event:{body.get('event_id') or mention.ts}"
        result = Acceptance.RECORDED
        if len(words) > MAX_TEXT:
            notices.tell(channel, user, _too_long(words), thread)
        elif verb.lower() == "status":
            result = record(
                "status", key, user, None, channel=channel, thread_ts=thread, via="mention"
            )
        elif verb.lower() == "rollback":
            try:
                environment, description = parse_rollback_text(rest, settings)
            except RollbotError as exc:
                notices.tell(channel, user, f":warning: {exc}", thread)
            else:
                result = record(
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
            notices.tell(channel, user, HELP, thread)
        ack()
        if not result.recorded:
            notices.tell(channel, user, NOT_RECORDED[result], thread)

    @app.event("app_home_opened")
    def on_home(ack: Callable[..., None], body: dict[str, Any]) -> None:
        """Anyone may look: the Home tab shows what #incidents shows, drawn by the worker."""
        home = HomeCallback.model_validate(body)
        if home.event.tab == "home":
            record("home", f"slack:event:{home.event_id}", home.event.user, None)
        ack()

    @app.event("message")
    def ignore_messages(ack: Callable[..., None]) -> None:
        ack()

    return app


def registered_listeners(app: App) -> list[Any]:
    """The listeners Bolt routes to (tests walk them against ``handlers.slack.interactions``)."""
    return list(app._listeners)
