"""What each Slack interaction does, in core terms; runs after the request is acked.

Every method here is called from the background pool with plain values (user,
incident id, argument). The core decides and commits; then the incident card is
re-rendered from the store and updated in place.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bot.audit import format_timeline, timeline
from bot.authz import Action
from bot.auto_ticks import AUTO_ACTOR
from bot.config import Settings
from bot.errors import NotFoundError, RollbotError
from bot.lifecycle import State
from bot.models import Incident
from bot.runbook import RUNBOOK, DecisionNode
from bot.service import Rollbot
from bot.steps import RestoreSource
from handlers.runtime import Runtime
from handlers.slack import blocks
from handlers.slack.metadata import ValueSigner, new_nonce
from handlers.slack.poster import SlackPoster
from handlers.slack.progress import Debouncer, SlackProgressSink

log = logging.getLogger(__name__)
SIGNING_KEY = "slack-button-values"


def parse_rollback_text(text: str, settings: Settings) -> tuple[str | None, str]:
    """``"production users.new_column breaks login"`` -> ("production", "users...").

    The first word, when given, must name an environment or a tier; anything else
    is refused with the valid names, so a typo never opens an incident elsewhere.
    """
    words = text.strip().split(maxsplit=1)
    if not words:
        return None, ""
    first = words[0].lower()
    if len(settings.environments_in_tier(first)) > 1:  # the card asks which one
        return first, words[1].strip() if len(words) > 1 else ""
    try:
        env = settings.resolve_environment(first)
    except RollbotError:
        valid = ", ".join(settings.environments) or "(none configured)"
        raise NotFoundError(
            f"unknown environment {words[0]!r}; usage: /rollback [environment] [description]; "
            f"valid environments: {valid}"
        ) from None
    return env.name, words[1].strip() if len(words) > 1 else ""


def _scenario_of(method_id: str, incident: Incident) -> str:
    """The common scenario a method answers when the decision tree's leaf does not name it
    (e.g. "Migration hangs/times out"), so the card offers it in every branch."""
    leaf = RUNBOOK.walk(incident.answers)
    if isinstance(leaf, DecisionNode) or method_id in leaf.methods:
        return ""
    return next((s.title for s in RUNBOOK.scenarios if method_id in s.methods), "")


class IncidentFlows:
    def __init__(self, runtime: Runtime, poster: SlackPoster, debounce_seconds: float = 1.0):
        self.runtime = runtime
        self.bot: Rollbot = runtime.bot
        self.signer = ValueSigner(runtime.bot.installation_secret(SIGNING_KEY))
        self.settings = runtime.settings
        self.poster = poster
        self.debouncer = Debouncer(debounce_seconds)
        self._card_locks: dict[int, threading.RLock] = {}
        self._locks_guard = threading.Lock()

    # ------------------------------------------------------------ rendering
    def _lock(self, incident_id: int) -> threading.RLock:
        with self._locks_guard:
            return self._card_locks.setdefault(incident_id, threading.RLock())

    def card_view(self, incident: Incident) -> blocks.CardView:
        view = blocks.CardView(incident=incident, nonce=new_nonce(), signer=self.signer)
        node = RUNBOOK.walk(incident.answers)
        view.environments = self.bot.environments_to_choose(incident)
        if view.environments:
            pass  # which environment comes first: the plans depend on it
        elif isinstance(node, DecisionNode):
            view.question = node
        elif incident.state in (State.TRIAGED.value, State.FAILED.value):
            view.options = self._method_options(incident, tuple(self.bot.allowed_methods(incident)))
        if incident.tier:
            policy = self.bot.policy(incident.tier)  # type: ignore[arg-type]
            now = self.bot.clock()
            valid = policy.valid(incident.approvals, incident.plan_hash, now)
            view.approvals_valid, view.approvals_needed = len(valid), policy.min_approvals
            view.approvers = [a.approver for a in valid]
            view.expired = [
                (a.approver, a.expires_at)
                for a in incident.approvals
                if a.plan_hash == incident.plan_hash and a.expires_at <= now
            ]
        view.ticks, view.paging = self.bot.checklist_and_paging(incident.id)
        if incident.state in (State.VERIFYING.value, State.RESOLVED.value):
            view.undoable = self.bot.undoable(incident)
        if incident.state in (State.METHOD_CHOSEN.value, State.AWAITING_APPROVAL.value):
            view.sources = self._sources(incident.id)
            view.timezone = self.settings.business_hours.timezone
        return view

    def _sources(self, incident_id: int) -> list[RestoreSource]:
        try:
            return self.bot.restore_sources(incident_id)
        except RollbotError as exc:  # the backups folder is unreachable: the card still renders
            log.warning("INC-%s: cannot list restore sources: %s", incident_id, exc)
            return []

    def _method_options(
        self, incident: Incident, method_ids: tuple[str, ...]
    ) -> list[blocks.MethodOption]:
        options = []
        previews = self.bot.previews(incident, method_ids)
        for n, method_id in enumerate(method_ids):
            method = RUNBOOK.method(method_id)
            opt = blocks.MethodOption(
                method_id=method_id,
                title=method.title,
                when_to_use=method.when_to_use,
                recommended=n == 0,
                data_loss=method.data_loss,
                scenario=_scenario_of(method_id, incident),
            )
            plans = previews[method_id]
            if isinstance(plans, RollbotError):
                opt.unavailable = str(plans)
            else:
                opt.plans = plans
            options.append(opt)
        return options

    def ensure_thread(self, incident: Incident) -> Incident:
        """Post the parent message and the card if they are missing (or a post failed).

        Under the incident's card lock, checking where the store says it lives: a click
        that races the first post waits for it instead of posting a second card. Callers
        pass an incident they just read or committed; it is read again only when someone
        else posted its thread meanwhile.
        """
        with self._lock(incident.id):
            where = (incident.chat_channel, incident.chat_thread, incident.chat_message)
            if self.bot.chat_of(incident.id) != where:
                incident = self.bot.get(incident.id)
            return self._ensure_thread(incident)

    def _ensure_thread(self, incident: Incident) -> Incident:
        if incident.chat_channel and incident.chat_thread and incident.chat_message:
            return incident
        text, parent_blocks = blocks.parent_message(incident)
        if not (incident.chat_channel and incident.chat_thread):
            parent = self.poster.post(self.settings.slack.incidents_channel, text, parent_blocks)
            if not parent:
                return incident
            channel, thread = parent["channel"], parent["ts"]
            self.bot.auto_tick(
                incident.id,
                "before.notify_team",
                f"incident thread posted in {self.settings.slack.incidents_channel}",
            )  # the card reads the ticks itself: the incident need not be read again
        else:
            channel, thread = incident.chat_channel, incident.chat_thread
        card_text, card_blocks = blocks.incident_card(self.card_view(incident))
        card = self.poster.post(channel, card_text, card_blocks, thread_ts=thread)
        message = card["ts"] if card else None
        self.bot.attach_chat(incident.id, channel, thread, message)
        # Read under the card lock and changed since only where it lives in chat: no re-read.
        incident.chat_channel, incident.chat_thread = channel, thread
        incident.chat_message = message or incident.chat_message
        return incident

    def refresh(self, incident_id: int) -> None:
        """Re-render the card (and the parent's headline) from the store, in place."""
        with self._lock(incident_id):
            self._render(self.bot.get(incident_id))

    def _after(self, incident_id: int, command: Callable[[], Incident]) -> Incident:
        """Run a core command and render the incident it committed, with the card lock held
        from before the command to after the render: a refresh that a concurrent change
        (a running step) asks for waits and renders after this one, so the card never ends
        on the older state, and the incident is not read a second time."""
        with self._lock(incident_id):
            incident = command()
            self._render(incident)
            return incident

    def _render(self, incident: Incident) -> None:
        with self._lock(incident.id):
            if not incident.chat_message:
                self.ensure_thread(incident)
                return
            text, card_blocks = blocks.incident_card(self.card_view(incident))
            self.poster.update(
                incident.chat_channel or "", incident.chat_message, text, card_blocks
            )
            ptext, pblocks = blocks.parent_message(incident)
            self.poster.update(
                incident.chat_channel or "", incident.chat_thread or "", ptext, pblocks
            )

    def say(self, incident: Incident, text: str) -> None:
        if incident.chat_channel and incident.chat_thread:
            self.poster.post(incident.chat_channel, text, thread_ts=incident.chat_thread)

    # ------------------------------------------------------------ commands
    def open(self, user: str, environment: str | None, description: str, source: str) -> Incident:
        incident = self.bot.open_incident(user, description, environment, source=source)
        # The devops channel hears of it through the outbox (handlers/slack/notices.py).
        return self.ensure_thread(incident)

    def answer(self, user: str, incident_id: int, choice: str) -> None:
        self._after(incident_id, lambda: self.bot.answer(incident_id, choice, user))

    def choose_environment(self, user: str, incident_id: int, name: str) -> None:
        self.bot.choose_environment(incident_id, name, user)
        self.refresh(incident_id)

    def choose(self, user: str, incident_id: int, method: str) -> None:
        self.bot.choose_method(incident_id, method, user)
        self.refresh(incident_id)
        self.attach_plan_files(incident_id)

    def attach_plan_files(self, incident_id: int) -> None:
        """What the card cannot hold goes into the thread as files, once per plan: the full
        plan when it is long, and every text the plan comes with (a drafted migration)."""
        incident = self.bot.get(incident_id)
        if not (incident.plan_hash and incident.chat_channel and incident.chat_thread):
            return
        files = []
        if blocks.plan_too_long(incident):
            files.append((f"{incident.ref}-plan.txt", blocks.plan_text(incident)))
        try:
            files += [
                (f"{incident.ref}-{name}", text) for name, text in self.bot.plan_files(incident_id)
            ]
        except RollbotError as exc:
            log.warning("%s: cannot draw up the plan's files: %s", incident.ref, exc)
        key = f"plan-files:{incident.id}:{incident.plan_hash}"
        if files and self.bot.claim_once(key, scope="slack-files"):
            for name, text in files:
                self.poster.upload(incident.chat_channel, incident.chat_thread, name, text, name)

    def pick_source(
        self,
        user: str,
        incident_id: int,
        snapshot: str | None = None,
        restore_to: datetime | None = None,
    ) -> None:
        """Re-plan with another snapshot or restore time; approvals start over."""
        self.bot.check_allowed(incident_id, user, Action.CHOOSE)  # before reading anything
        if snapshot is not None and snapshot not in {
            s.name for s in self.bot.restore_sources(incident_id)
        }:
            raise RollbotError(f"{snapshot[:80]!r} is not a snapshot this incident can restore")
        incident = self.bot.replan(incident_id, user, snapshot=snapshot, restore_to=restore_to)
        self.refresh(incident_id)
        self.attach_plan_files(incident_id)
        restore = next((st for st in incident.steps if "snapshot" in st.params), None)
        picked = restore.params.get("snapshot") if restore else None
        when = f" (newest before {restore_to:%Y-%m-%d %H:%M} UTC)" if restore_to else ""
        self.say(
            incident,
            f":arrows_counterclockwise: <@{user}> changed the restore of {incident.ref} to "
            f"{picked}{when}; the plan was drawn up again and approvals start over.",
        )

    def undo(self, user: str, incident_id: int) -> None:
        """Open the follow-up incident that swaps the kept database back, in its own thread."""
        undo = self.ensure_thread(self.bot.open_undo(incident_id, user, source="slack"))
        link = blocks.thread_link(undo.chat_channel, undo.chat_thread)
        self.say(
            self.bot.get(incident_id),
            f":leftwards_arrow_with_hook: <@{user}> opened {undo.ref} to undo this restore: "
            f"<{link}|its thread> (plan, approvals and run there).",
        )

    def request_approval(self, user: str, incident_id: int) -> None:
        incident = self.bot.request_approval(incident_id, user)
        self.refresh(incident_id)
        valid, needed = self.bot.approval_status(incident)
        self.say(
            incident,
            f":raised_hand: <@{user}> asks for approval of the {incident.method} plan of "
            f"{incident.ref} ({valid}/{needed}); approvers, see the card above.",
        )

    def approve(self, user: str, incident_id: int) -> None:
        outcome = self.bot.approve(incident_id, user)
        self.refresh(incident_id)
        self.say(
            outcome.incident,
            f":white_check_mark: <@{user}> approved {outcome.incident.ref} "
            f"({outcome.valid}/{outcome.needed})"
            + (" — ready to run." if outcome.satisfied else ""),
        )

    def run(self, user: str, incident_id: int) -> None:
        try:
            incident = self.bot.start(incident_id, user)
        except RollbotError:
            self.refresh(incident_id)  # a stale Run (expired approval): show the truth too
            raise
        self.refresh(incident_id)
        self.say(incident, f":arrow_forward: <@{user}> started the {incident.method} plan.")
        self._submit(incident)

    def resume_queued(self, min_idle: timedelta = timedelta(0)) -> None:
        """Continue plans queued but not begun: by a process that stopped (at start-up), or
        by a person from the CLI (a worker looks every few seconds)."""
        for incident_id in self.runtime.executor.resumable(min_idle):
            self._submit(self.bot.get(incident_id))

    def _submit(self, incident: Incident) -> None:
        sink = SlackProgressSink(
            self.poster,
            incident.chat_channel or self.settings.slack.incidents_channel,
            incident.chat_thread or "",
            debouncer=self.debouncer,
            on_change=self.refresh,
        )
        self.runtime.executor.submit(incident.id, sink, done=self._finished)

    def _finished(self, incident: Incident) -> None:
        self.refresh(incident.id)
        if incident.state == State.VERIFYING.value:
            self.say(
                incident,
                f":mag: {incident.ref}: all steps done. Tick the after-rollback checklist, "
                "record the root cause, then resolve.",
            )
        elif incident.state == State.FAILED.value:
            self.say(incident, f":x: {incident.ref} failed; choose another method or cancel.")
        for step in incident.steps:
            if step.status == "waiting":
                todo = (step.result or {}).get("instructions") or step.title
                self.say(
                    incident,
                    f":raised_hand: {incident.ref} step {step.seq} is for a person: {todo} "
                    "Click *Done* on the card when it is done.",
                )

    def step_decision(self, user: str, incident_id: int, step_id: int, decision: str) -> None:
        incident = self.bot.decide_step(incident_id, step_id, user, decision)
        self.refresh(incident_id)
        step = next(s for s in incident.steps if s.id == step_id)
        if decision == "retry" and incident.state == State.AWAITING_APPROVAL.value:
            self.say(
                incident,
                f":raised_hand: <@{user}> wants to re-run step {step.seq} ({step.title}) of "
                f"{incident.ref}. It is destructive, so it needs a fresh approval: the one "
                "given for the first run does not carry over. Approvers, see the card above.",
            )
        elif decision == "done":
            self.say(incident, f":white_check_mark: <@{user}> did step {step.seq} ({step.title}).")
        else:
            self.say(incident, f":point_right: <@{user}> chose *{decision}* for step {step.seq}.")
        if incident.state == State.RUNNING.value:
            self._submit(incident)

    def announce_interrupted(self, incident_id: int, step_id: int, leftovers: list[str]) -> None:
        """Tell the thread a step was interrupted, what it left behind, and what each choice does."""
        incident = self.ensure_thread(self.bot.get(incident_id))
        step = next((s for s in incident.steps if s.id == step_id), None)
        if step is None or step.status != "interrupted":
            return  # someone decided already
        text, message_blocks = blocks.interruption_notice(
            incident, step, leftovers, new_nonce(), self.signer
        )
        if incident.chat_channel and incident.chat_thread:
            self.poster.post(incident.chat_channel, text, message_blocks, incident.chat_thread)
        self.refresh(incident_id)

    def set_ticks(self, user: str, incident_id: int, which: str, selected: set[str]) -> None:
        items = RUNBOOK.before_checklist if which == "before" else RUNBOOK.after_checklist
        current = self.bot.ticks(incident_id)
        changed = False
        for item in items:
            want = item.id in selected
            tick = current.get(item.id)
            have = bool(tick and tick.ticked)
            if have and not want and tick and tick.actor == AUTO_ACTOR:
                continue  # ticked by rollbot after this card was drawn, maybe: keep it
            if want != have:
                self.bot.tick(incident_id, item.id, user, ticked=want)
                changed = True
        if changed:
            self.refresh(incident_id)

    def resolve(self, user: str, incident_id: int, confirm: bool, channel: str | None) -> None:
        incident = self.bot.check_allowed(incident_id, user, Action.RESOLVE)  # before offering
        missing = self.bot.unticked(incident_id)
        if missing and not confirm and incident.state != State.RESOLVED.value:
            self.poster.ephemeral(
                channel or incident.chat_channel,
                user,
                f"{incident.ref} has {len(missing)} unticked checklist item(s); resolve anyway?",
                thread_ts=incident.chat_thread,
                blocks=blocks.resolve_confirmation(
                    incident,
                    missing,
                    self.bot.issue_token(incident.id, user, "resolve_confirm"),
                    self.signer,
                ),
            )
            return
        incident = self.bot.resolve(incident_id, user, confirm_unticked=confirm)
        self.refresh(incident.id)
        self._post_timeline(incident)

    def cancel(self, user: str, incident_id: int) -> None:
        incident = self._after(
            incident_id, lambda: self.bot.cancel(incident_id, user, reason="cancelled from Slack")
        )
        self._post_timeline(incident)

    def _post_timeline(self, incident: Incident) -> None:
        """A closed incident's timeline in its thread (as a file when too long for a message)."""
        with self.bot.store.read() as session:  # a read: no write lock on SQLite
            lines = format_timeline(timeline(session, incident.id))
        self.say(incident, blocks.timeline_text(incident, lines))
        if not blocks.timeline_fits(incident, lines) and incident.chat_channel:
            body = f"# Timeline of {incident.ref}\n\n" + "\n".join(f"- {ln}" for ln in lines)
            name = f"{incident.ref}-timeline.md"
            self.poster.upload(incident.chat_channel, incident.chat_thread, name, body, name)

    def record_root_cause(self, user: str, incident_id: int, root_cause: str, notes: str) -> None:
        self.bot.record_root_cause(incident_id, user, root_cause, notes)
        self.refresh(incident_id)

    def acknowledge(self, user: str, incident_id: int) -> None:
        self.bot.acknowledge_page(incident_id, user)
        self.refresh(incident_id)

    def home_view(self) -> dict[str, Any]:
        """The Home tab for whoever opened it (the same for everyone)."""
        from handlers.slack.home import gather, home_view

        return home_view(gather(self.bot, self.settings))

    def status(self) -> str:
        """Open incidents with links; a thread lost to a Slack outage is posted now."""
        incidents = self.bot.open_incidents()
        for incident in incidents:
            if not incident.chat_message:
                self.ensure_thread(incident)
        return blocks.status_text(self.bot.open_incidents())
