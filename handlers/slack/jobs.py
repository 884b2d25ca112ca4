"""What a worker does with each inbox row from Slack: bind it, then act through the flows.

Before anything acts, a click is bound to its incident by the message it was
clicked on (channel + message ts -> that incident's card or thread), and the
incident its value names must be that one; a modal's ``private_metadata`` and an
ephemeral button carry a token rollbot issued to that person for that incident.
A mismatch is refused and audited. Every row is handled under its own request
context (``bot.request_context``): exactly once, decided at its accepted time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

from bot.authz import Action
from bot.errors import DuplicateRequestError, RollbotError, TamperedRequestError
from bot.inbox import InboxStatus
from bot.models import InboxItem, Incident, utcnow
from bot.request_context import MAX_WAIT, RequestContext, handling
from handlers.runtime import Runtime
from handlers.slack import blocks, interactions
from handlers.slack.channels import ChannelDirectory
from handlers.slack.flows import IncidentFlows
from handlers.slack.metadata import ActionValue, checklist_incident, source_incident
from handlers.slack.poster import SlackPoster

log = logging.getLogger(__name__)
GENERIC_ERROR = (
    ":warning: rollbot hit an unexpected error; nothing more was done. "
    "The details are in rollbot's log; try again or use `rollbot shell`."
)


class NotYetPostedError(Exception):
    """The card a click names is being posted right now: handle the click a moment later."""


@dataclass(frozen=True)
class ReplyTo:
    """Where a refusal for this request goes (ephemeral, to the person who acted)."""

    channel: str | None
    user: str
    thread_ts: str | None = None


def _what(item: InboxItem) -> str:
    interaction = interactions.button(str(item.payload.get("action_id") or ""))
    if interaction is not None:
        return interaction.what
    return {"rollback": "/rollback", "status": "status request", "home": "Home tab"}.get(
        item.action, "request"
    )


class SlackJobs:
    def __init__(
        self,
        runtime: Runtime,
        flows: IncidentFlows,
        poster: SlackPoster,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.runtime = runtime
        self.bot = runtime.bot
        self.flows = flows
        self.poster = poster
        self.clock = clock
        slack = runtime.settings.slack
        self.channels = ChannelDirectory(
            poster.client, (slack.incidents_channel, slack.devops_channel)
        )
        self.handlers: dict[str, Callable[[InboxItem, ReplyTo], None]] = {
            "rollback": self._rollback,
            "status": self._status,
            "home": lambda i, r: self.poster.publish_home(i.actor, flows.home_view()),
            "answer": lambda i, r: flows.answer(i.actor, self._bound(i), self._value(i).arg),
            "environment": lambda i, r: flows.choose_environment(
                i.actor, self._bound(i), self._value(i).arg
            ),
            "choose": lambda i, r: flows.choose(i.actor, self._bound(i), self._value(i).arg),
            "request_approval": lambda i, r: flows.request_approval(i.actor, self._bound(i)),
            "approve": lambda i, r: flows.approve(i.actor, self._bound(i)),
            "run": lambda i, r: flows.run(i.actor, self._bound(i)),
            "cancel": lambda i, r: flows.cancel(i.actor, self._bound(i)),
            "undo": lambda i, r: flows.undo(i.actor, self._bound(i)),
            "acknowledge": lambda i, r: flows.acknowledge(i.actor, self._bound(i)),
            "resolve": self._resolve,
            "step": self._step,
            "tick": self._tick,
            "source": self._source,
            "root_cause_open": self._root_cause_open,
            "root_cause_submit": self._root_cause_submit,
            "step_interrupted": self._interrupted,
        }

    # ------------------------------------------------------------ one row
    def handle(self, item: InboxItem) -> InboxStatus:
        """Act on ``item``; the status to finish it with. Errors of the state database
        propagate (the worker gives the row back to retry); the rest are told and finished."""
        reply = self._reply_to(item)
        waited = self.clock() - item.accepted_at
        if item.source == "slack" and waited > MAX_WAIT:
            minutes = int(waited.total_seconds() // 60)
            self._tell(
                reply,
                f":hourglass: Your {_what(item)} from {item.accepted_at:%H:%M} UTC waited "
                f"{minutes} minutes before rollbot could act on it (it was stopped or could not "
                "reach its database), so nothing was done. Look at the card and try again.",
            )
            self.bot.note(
                None,
                item.actor,
                "refused",
                f"Refused a Slack {item.action} that waited {minutes} min to be handled",
                {"inbox_id": item.id, "claimed_incident": item.incident_id},
            )
            return InboxStatus.EXPIRED
        handler = self.handlers.get(item.action)
        if handler is None:
            log.warning("inbox row %s: unknown action %r", item.id, item.action)
            return InboxStatus.FAILED
        with handling(RequestContext(item.key, item.accepted_at, via=f"slack ({item.source})")):
            try:
                handler(item, reply)
            except DuplicateRequestError as dup:
                self._after_duplicate(item, dup)
            except RollbotError as exc:
                self._tell(reply, f":no_entry: {exc}")
                return InboxStatus.REFUSED
        return InboxStatus.DONE

    def tell_failure(self, item: InboxItem) -> None:
        self._tell(self._reply_to(item), GENERIC_ERROR)

    def _tell(self, reply: ReplyTo, text: str) -> None:
        if reply.user != "rollbot":
            self.poster.ephemeral(reply.channel, reply.user, text, reply.thread_ts)

    def _reply_to(self, item: InboxItem) -> ReplyTo:
        p = item.payload
        channel, thread = p.get("channel"), p.get("thread_ts") or p.get("message_ts")
        if channel is None and item.incident_id is not None:  # a modal: answer in the thread
            try:
                incident = self.bot.get(item.incident_id)
                channel, thread = incident.chat_channel, incident.chat_thread
            except RollbotError:
                pass
        return ReplyTo(channel, item.actor, thread)

    def _after_duplicate(self, item: InboxItem, dup: DuplicateRequestError) -> None:
        """Handled before (a worker died after acting): make Slack show what the store holds."""
        incident_id = dup.incident_id or item.incident_id
        if incident_id is not None:
            self.flows.ensure_thread(self.bot.get(incident_id))
            self.flows.refresh(incident_id)

    # ------------------------------------------------------------ binding
    def _value(self, item: InboxItem) -> ActionValue:
        """The click's value, only if rollbot sealed it for this very button."""
        p = item.payload
        try:
            return ActionValue.decode(p.get("value"), self.flows.signer, str(p.get("action_id")))
        except RollbotError as exc:
            self.bot.refuse(
                None, item.actor, f"Slack {item.action}", TamperedRequestError(str(exc))
            )

    def _bound(self, item: InboxItem, claimed: int | None = None, purpose: str = "") -> int:
        """The incident the click acts on: the one whose message it was clicked on (or, for an
        ephemeral message, the one rollbot issued that button to this person for)."""
        p = item.payload
        if claimed is None:
            claimed = self._value(item).incident_id
        if p.get("ephemeral"):
            value = self._value(item)
            if purpose and self.bot.token_matches(value.nonce, claimed, item.actor, purpose):
                return claimed
            self._refuse_tampered(item, None, claimed, "rollbot did not give you that button")
        channel, ts = p.get("channel"), p.get("message_ts")
        if p.get("message_channel") not in (None, channel):  # Slack sends both, the same
            self._refuse_tampered(item, None, claimed, "its channel and its message disagree")
        found = None
        if channel and ts:
            found = self.bot.incident_for_message(channel, ts, p.get("thread_ts"))
        if found is None:
            if self._card_pending(claimed):
                raise NotYetPostedError(f"INC-{claimed}")
            self._refuse_tampered(item, None, claimed, "it is not on an incident's card or thread")
        if found != claimed:
            self._refuse_tampered(item, found, claimed, f"it is on INC-{found}'s card")
        return claimed

    def _card_pending(self, incident_id: int) -> bool:
        try:
            incident = self.bot.get(incident_id)
        except RollbotError:
            return False
        return not incident.chat_message and incident.state not in ("resolved", "cancelled")

    def _refuse_tampered(
        self, item: InboxItem, found: int | None, claimed: int, why: str
    ) -> NoReturn:
        self.bot.note(
            found,
            item.actor,
            "refused",
            f"Refused a Slack {item.action} naming INC-{claimed}: {why}",
            {"claimed_incident": claimed, "action_id": item.payload.get("action_id")},
        )
        raise TamperedRequestError(
            f"this button names INC-{claimed} but {why}; nothing was done. "
            "Use the buttons on the incident's own card."
        )

    # ------------------------------------------------------------ handlers
    def _elsewhere(self, item: InboxItem, reply: ReplyTo) -> bool:
        """A mention outside the configured channels: point to #incidents, do nothing."""
        if item.payload.get("via") != "mention" or self.channels.allows(reply.channel):
            return False
        slack = self.runtime.settings.slack
        self._tell(
            reply,
            f"I answer mentions in {slack.incidents_channel} and {slack.devops_channel} only; "
            f"mention me there, or use `/rollback` anywhere.",
        )
        return True

    def _rollback(self, item: InboxItem, reply: ReplyTo) -> None:
        if self._elsewhere(item, reply):
            return
        p = item.payload
        incident = self.flows.open(
            item.actor, p.get("environment"), p.get("description") or "", "slack"
        )
        self._tell_opened(reply, incident)

    def _tell_opened(self, reply: ReplyTo, incident: Incident) -> None:
        link = blocks.thread_link(incident.chat_channel, incident.chat_thread)
        text = f"Opened {incident.ref}: <{link}|incident thread>"
        if reply.thread_ts:  # a mention: answer where it was asked
            self.poster.post(reply.channel or "", text, thread_ts=reply.thread_ts)
        else:
            self._tell(reply, text)

    def _status(self, item: InboxItem, reply: ReplyTo) -> None:
        if self._elsewhere(item, reply):
            return
        self.poster.post(reply.channel or "", self.flows.status(), thread_ts=reply.thread_ts)

    def _resolve(self, item: InboxItem, reply: ReplyTo) -> None:
        value = self._value(item)
        incident_id = self._bound(item, purpose="resolve_confirm")
        # "Resolve anyway" counts only from the confirmation rollbot gave this person.
        confirm = value.confirm and bool(item.payload.get("ephemeral"))
        self.flows.resolve(item.actor, incident_id, confirm, reply.channel)

    def _step(self, item: InboxItem, reply: ReplyTo) -> None:
        value = self._value(item)
        incident_id = self._bound(item)
        self.flows.step_decision(item.actor, incident_id, value.step_id or 0, value.arg)

    def _tick(self, item: InboxItem, reply: ReplyTo) -> None:
        p = item.payload
        which = str(p.get("action_id") or "").partition(":")[2]
        try:
            claimed = checklist_incident(str(p.get("block_id") or ""), which, self.flows.signer)
        except RollbotError as exc:
            self.bot.refuse(None, item.actor, "Slack tick", TamperedRequestError(str(exc)))
        incident_id = self._bound(item, claimed)
        self.flows.set_ticks(item.actor, incident_id, which, set(p.get("selected") or []))

    def _source(self, item: InboxItem, reply: ReplyTo) -> None:
        """A snapshot or restore time picked on the card: bound by its sealed block."""
        p = item.payload
        try:
            claimed = source_incident(str(p.get("block_id") or ""), self.flows.signer)
        except RollbotError as exc:
            self.bot.refuse(
                None, item.actor, "Slack restore choice", TamperedRequestError(str(exc))
            )
        incident_id = self._bound(item, claimed)
        if p.get("action_id") == "rb_source:snapshot":
            picked = p.get("selected_option")
            if not isinstance(picked, str) or not picked:
                raise RollbotError("no snapshot was picked; nothing changed")
            self.flows.pick_source(item.actor, incident_id, snapshot=picked)
            return
        moment = p.get("selected_time")
        if not isinstance(moment, int):
            raise RollbotError("no restore time was picked; nothing changed")
        when = datetime.fromtimestamp(moment, UTC)
        self.flows.pick_source(item.actor, incident_id, restore_to=when)

    def _root_cause_open(self, item: InboxItem, reply: ReplyTo) -> None:
        incident_id = self._bound(item)
        self.bot.check_allowed(incident_id, item.actor, Action.ROOT_CAUSE)
        token = self.bot.issue_token(incident_id, item.actor, "root_cause")
        modal = blocks.root_cause_modal(incident_id, token)
        if not self.poster.open_modal(str(item.payload.get("trigger_id") or ""), modal):
            self._tell(reply, "The root-cause form did not open in time; click the button again.")

    def _root_cause_submit(self, item: InboxItem, reply: ReplyTo) -> None:
        p = item.payload
        try:
            meta = ActionValue.decode(p.get("metadata"))
        except RollbotError as exc:
            self.bot.refuse(None, item.actor, "Slack root cause", TamperedRequestError(str(exc)))
        if not self.bot.token_matches(meta.nonce, meta.incident_id, item.actor, "root_cause"):
            self._refuse_tampered(
                item, None, meta.incident_id, "rollbot did not open this form for you"
            )
        self.flows.record_root_cause(
            item.actor, meta.incident_id, p["root_cause"], p.get("notes") or ""
        )

    def _interrupted(self, item: InboxItem, reply: ReplyTo) -> None:
        step_id = int(item.payload["step_id"])
        leftovers = self.runtime.executor.clean_up_interrupted(step_id)
        self.flows.announce_interrupted(item.incident_id or 0, step_id, leftovers)
