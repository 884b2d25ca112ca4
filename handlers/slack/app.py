"""The Bolt app factory: one ``App`` per process, listeners that only translate.

Every listener acknowledges at once (``process_before_response=True``: the
HTTP response, or the Socket Mode envelope ack, leaves when the listener
returns) and hands the work to a background pool. There the click is claimed
exactly once (``Rollbot.claim_once``), the core decides, and errors become one
ephemeral line: a ``RollbotError`` says what was refused and why; anything else
gets a generic line and a redacted log entry, never a stack trace in Slack.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

from bot.errors import RollbotError
from bot.redact import redact
from bot.service import Rollbot
from handlers.runtime import Runtime
from handlers.slack import blocks
from handlers.slack.flows import IncidentFlows, parse_rollback_text
from handlers.slack.metadata import ActionValue, idempotency_key
from handlers.slack.poster import SlackPoster

log = logging.getLogger(__name__)
GENERIC_ERROR = (
    ":warning: rollbot hit an unexpected error; nothing more was done. "
    "The details are in rollbot's log; try again or use `rollbot shell`."
)
MENTION = re.compile(r"<@[A-Z0-9]+>")
HELP = (
    "Try `@rollbot rollback <environment> <description>` or `@rollbot status` "
    "(or the `/rollback` command)."
)


@dataclass(frozen=True)
class ReplyTo:
    """Where an error for this request goes (ephemeral, to the person who acted)."""

    channel: str | None
    user: str
    thread_ts: str | None = None


class Dispatcher:
    """Runs acked work in the background, once per idempotency key, errors as ephemerals."""

    def __init__(self, bot: Rollbot, poster: SlackPoster, workers: int = 4) -> None:
        self.bot = bot
        self.poster = poster
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="rollbot-slack")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, key: str | None, reply: ReplyTo, job: Callable[[], None]) -> Future[None]:
        future = self.pool.submit(self._run, key, reply, job)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _run(self, key: str | None, reply: ReplyTo, job: Callable[[], None]) -> None:
        try:
            if key is not None and not self.bot.claim_once(key, scope="slack"):
                log.info("duplicate Slack request ignored: %s", key)
                return
            job()
        except RollbotError as exc:
            self.poster.ephemeral(reply.channel, reply.user, f":no_entry: {exc}", reply.thread_ts)
        except Exception:
            log.error("Slack work failed:\n%s", redact(traceback.format_exc()))
            self.poster.ephemeral(reply.channel, reply.user, GENERIC_ERROR, reply.thread_ts)

    def idle(self) -> bool:
        with self._lock:
            return not self._pending

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)


class BotIdentity:
    """Who the bot is (``auth.test``), learned in the background: start-up needs no Slack."""

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self.user_id: str | None = None
        self.bot_id: str | None = None
        self.team_id: str | None = None

    def learn(self) -> None:
        try:
            r = self.client.auth_test()
            self.user_id, self.bot_id, self.team_id = (
                r.get("user_id"),
                r.get("bot_id"),
                r.get("team_id"),
            )
        except Exception as exc:
            log.warning("auth.test failed (will work without it): %s", redact(str(exc))[:200])

    def learn_in_background(self) -> None:
        threading.Thread(target=self.learn, name="slack-auth-test", daemon=True).start()


def _reply_to(body: dict[str, Any]) -> ReplyTo:
    user = (body.get("user") or {}).get("id") or body.get("user_id") or "unknown"
    channel = (body.get("channel") or {}).get("id") or body.get("channel_id")
    message = body.get("message") or {}
    return ReplyTo(channel, user, message.get("thread_ts") or message.get("ts"))


def build_app(
    runtime: Runtime,
    *,
    client: WebClient,
    signing_secret: str | None = None,
    socket_mode: bool = False,
    workers: int = 4,
    debounce_seconds: float = 1.0,
) -> App:
    """The Slack app for one process. ``client`` is made by ``make_web_client``."""
    poster = SlackPoster(client)
    flows = IncidentFlows(runtime, poster, debounce_seconds=debounce_seconds)
    dispatcher = Dispatcher(runtime.bot, poster, workers)
    identity = BotIdentity(client)
    identity.learn_in_background()
    token = client.token

    def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
        # No I/O here: it runs before every ack.
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id or identity.team_id,
            bot_token=token,
            bot_user_id=identity.user_id,
            bot_id=identity.bot_id,
        )

    if not socket_mode and not signing_secret:
        raise RollbotError("SLACK_SIGNING_SECRET is not set; HTTP mode needs it to verify requests")
    app = App(
        client=client,
        signing_secret=signing_secret or "unused-in-socket-mode",
        authorize=authorize,
        process_before_response=True,
        request_verification_enabled=not socket_mode,
        token_verification_enabled=False,
        name="rollbot",
    )
    settings = runtime.settings

    @app.error
    def on_error(error: Exception, body: dict[str, Any], logger: logging.Logger) -> None:
        log.error("Slack listener error: %s", redact(f"{type(error).__name__}: {error}"))
        if isinstance(body, dict):
            reply = _reply_to(body)
            text = f":no_entry: {error}" if isinstance(error, RollbotError) else GENERIC_ERROR
            dispatcher.submit(
                None, reply, lambda: poster.ephemeral(reply.channel, reply.user, text)
            )

    @app.command("/rollback")
    def on_rollback(ack: Callable[..., None], command: dict[str, Any]) -> None:
        try:
            environment, description = parse_rollback_text(command.get("text") or "", settings)
        except RollbotError as exc:
            ack(text=f":warning: {exc}", response_type="ephemeral")
            return
        ack()
        user, channel = command["user_id"], command.get("channel_id")

        def job() -> None:
            incident = flows.open(user, environment, description, source="slack")
            link = blocks.thread_link(incident.chat_channel, incident.chat_thread)
            poster.ephemeral(channel, user, f"Opened {incident.ref}: <{link}|incident thread>")

        key = f"command:{command.get('trigger_id') or command.get('response_url')}"
        dispatcher.submit(key, ReplyTo(channel, user), job)

    verbs: dict[str, Callable[[str, ActionValue, ReplyTo], None]] = {
        "answer": lambda u, v, r: flows.answer(u, v.incident_id, v.arg),
        "choose": lambda u, v, r: flows.choose(u, v.incident_id, v.arg),
        "request_approval": lambda u, v, r: flows.request_approval(u, v.incident_id),
        "approve": lambda u, v, r: flows.approve(u, v.incident_id),
        "run": lambda u, v, r: flows.run(u, v.incident_id),
        "resolve": lambda u, v, r: flows.resolve(u, v.incident_id, v.confirm, r.channel),
        "cancel": lambda u, v, r: flows.cancel(u, v.incident_id),
        "step": lambda u, v, r: flows.step_decision(u, v.incident_id, v.step_id or 0, v.arg),
    }

    @app.action(
        re.compile(r"^rb_(answer|choose|request_approval|approve|run|resolve|cancel|step):")
    )
    def on_button(ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        reply = _reply_to(body)
        action_id = action["action_id"]
        verb = action_id.split(":", 1)[0].removeprefix("rb_")
        raw = action.get("value")

        def job() -> None:
            verbs[verb](reply.user, ActionValue.decode(raw), reply)

        try:
            key: str | None = idempotency_key(ActionValue.decode(raw), reply.user, action_id)
        except RollbotError:
            key = None  # job() reports the bad value
        dispatcher.submit(key, reply, job)

    @app.action(re.compile(r"^rb_tick:"))
    def on_tick(ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        reply = _reply_to(body)
        which = action["action_id"].split(":", 1)[1]
        block_id = action.get("block_id") or ""
        selected = {o["value"] for o in action.get("selected_options") or []}

        def job() -> None:
            incident_id = block_id.rsplit(":", 1)[-1]
            if not incident_id.isdigit() or which not in ("before", "after"):
                raise RollbotError("this checklist is not rollbot's; use the incident thread")
            flows.set_ticks(reply.user, int(incident_id), which, selected)

        key = f"tick:{action.get('action_ts')}:{reply.user}:{action['action_id']}:{block_id}"
        dispatcher.submit(key, reply, job)

    @app.action(re.compile(r"^rb_root_cause:"))
    def on_root_cause(
        ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        ack()
        reply = _reply_to(body)
        trigger_id = body.get("trigger_id", "")
        raw = action.get("value")

        def job() -> None:
            # The modal opens first, before any other I/O: the trigger_id lives 3 s.
            value = ActionValue.decode(raw)
            poster.open_modal(trigger_id, blocks.root_cause_modal(value.incident_id))

        dispatcher.submit(None, reply, job)

    @app.view("rb_root_cause")
    def on_root_cause_submit(
        ack: Callable[..., None], body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        values = view.get("state", {}).get("values", {})
        root_cause = ((values.get("root_cause") or {}).get("value") or {}).get("value") or ""
        notes = ((values.get("notes") or {}).get("value") or {}).get("value") or ""
        if not root_cause.strip():
            ack(response_action="errors", errors={"root_cause": "Describe the root cause"})
            return
        ack()
        user = body["user"]["id"]
        meta = view.get("private_metadata")

        def job() -> None:
            flows.record_root_cause(user, ActionValue.decode(meta).incident_id, root_cause, notes)

        dispatcher.submit(f"view:{view.get('id')}:{view.get('hash')}", ReplyTo(None, user), job)

    @app.event("app_mention")
    def on_mention(ack: Callable[..., None], body: dict[str, Any], event: dict[str, Any]) -> None:
        ack()
        user, channel = event.get("user") or "unknown", event.get("channel")
        thread = event.get("thread_ts") or event.get("ts")
        words = MENTION.sub("", event.get("text") or "").strip()
        verb, _, rest = words.partition(" ")

        def job() -> None:
            if verb.lower() == "status":
                poster.post(channel or "", flows.status(), thread_ts=thread)
            elif verb.lower() == "rollback":
                environment, description = parse_rollback_text(rest, settings)
                incident = flows.open(user, environment, description, source="slack")
                link = blocks.thread_link(incident.chat_channel, incident.chat_thread)
                poster.post(
                    channel or "",
                    f"Opened {incident.ref}: <{link}|incident thread>",
                    thread_ts=thread,
                )
            else:
                poster.ephemeral(channel, user, HELP, thread)

        dispatcher.submit(
            f"event:{body.get('event_id') or event.get('event_ts')}",
            ReplyTo(channel, user, thread),
            job,
        )

    @app.event("message")
    def ignore_messages(ack: Callable[..., None]) -> None:
        ack()

    dispatcher.submit(None, ReplyTo(None, "rollbot"), flows.resume_queued)
    app.rollbot_dispatcher = dispatcher  # type: ignore[attr-defined]
    app.rollbot_flows = flows  # type: ignore[attr-defined]
    return app


def dispatcher_of(app: App) -> Dispatcher:
    return app.rollbot_dispatcher  # type: ignore[attr-defined,no-any-return]
