"""The incident core: one facade that every adapter (Slack, terminal, drill) calls.

Each command is one unit of work: it checks the state machine and the approval
policy, changes state, and writes audit events in the same transaction. A
refused attempt changes nothing and is audited in a transaction of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

from sqlalchemy import delete, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from bot import authz, auto_ticks, outbox, timers
from bot.approval import ApprovalPolicy, GroupDirectory, NoGroups
from bot.audit import AuditTrail
from bot.authz import Action, Standing
from bot.config import EnvironmentConfig, Settings, Tier
from bot.errors import DuplicateRequestError, NotFoundError, RollbotError
from bot.lifecycle import (
    OPEN_STATES,
    STEP_DONE,
    State,
    StepStatus,
    check_transition,
    in_words,
)
from bot.methods import StepSpec, method_title, plan_steps
from bot.models import (
    Approval,
    AuditEvent,
    ChecklistTick,
    IdempotencyKey,
    InboxItem,
    Incident,
    InstallationSecret,
    IssuedToken,
    Step,
    utcnow,
)
from bot.notify import NoticeKind
from bot.redact import register_secret, scrub_user_text
from bot.request_context import current_request, decision_time
from bot.restore_choice import restore_options
from bot.runbook import RUNBOOK, Choice
from bot.shared_reads import SharedReads
from bot.steps import Plan, RestoreSource, StepContext, build_step
from bot.store import Store, open_store

log = logging.getLogger(__name__)
T = TypeVar("T")
# Transitions people outside the thread hear about (bot.escalation decides who).
STATE_NOTICES: dict[State, NoticeKind] = {
    State.AWAITING_APPROVAL: "approval_waiting",
    State.FAILED: "step_failed",
    State.VERIFYING: "done",
    State.RESOLVED: "resolved",
    State.CANCELLED: "cancelled",
}


def parse_ref(ref: int | str) -> int:
    """``42``, ``"42"`` or ``"INC-42"`` -> 42; anything else is a clear error."""
    text = str(ref).strip().upper().removeprefix("INC-").removeprefix("#")
    if not text.isdigit():
        raise NotFoundError(f"{ref!r} is not an incident id (like INC-42)")
    return int(text)


def _ticks_in(session: Session, incident_id: int) -> dict[str, ChecklistTick]:
    rows = session.scalars(select(ChecklistTick).where(ChecklistTick.incident_id == incident_id))
    return {t.item_id: t for t in rows}


def _maybe_ref(ref: int | str | None) -> int | None:
    try:
        return parse_ref(ref) if ref is not None else None
    except NotFoundError:
        return None


def _request_key(request_key: str, action: str) -> str:
    """One key per (request, core command): one click may tick several items."""
    full = f"{request_key}|{action}"
    if len(full) <= 200:
        return full
    return full[:130] + "#" + hashlib.sha256(full.encode()).hexdigest()


def _key_row(key: str, incident_id: int | None, now: datetime) -> IdempotencyKey:
    return IdempotencyKey(key=key, scope="request", incident_id=incident_id, created_at=now)


def _raise_if_done(session: Session, key: str) -> None:
    done = session.get(IdempotencyKey, key)
    if done is not None:
        raise DuplicateRequestError("this request was already handled", done.incident_id)


DECISIONS = {
    "retry": Action.RETRY_STEP,
    "skip": Action.SKIP_STEP,
    "abandon": Action.ABANDON_STEP,
    "done": Action.CONFIRM_STEP,
}
# Which decisions a step in each status takes.
DECIDABLE = {
    StepStatus.INTERRUPTED.value: ("retry", "skip", "abandon"),
    StepStatus.WAITING.value: ("done", "abandon"),
}


@dataclass(frozen=True)
class Draft:
    """A method's steps for one incident, pinned and planned before anything is written."""

    basis: tuple[str | None, list[Any]]  # (environment, answers) the plan was drawn up for
    drafted: list[tuple[StepSpec, dict[str, Any], bool, str]]
    plan_hash: str

    def steps(self) -> list[Step]:
        return [
            Step(
                seq=seq,
                kind=spec.kind,
                params=params,
                title=spec.title,
                destructive=destructive,
                plan_text=plan_text,
                status=StepStatus.PENDING.value,
                attempt=0,
            )
            for seq, (spec, params, destructive, plan_text) in enumerate(self.drafted, start=1)
        ]


@dataclass(frozen=True)
class ApprovalOutcome:
    incident: Incident
    valid: int
    needed: int

    @property
    def satisfied(self) -> bool:
        return self.valid >= self.needed


class Rollbot:
    """Incidents, approvals, checklists and the audit trail, over one store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        directory: GroupDirectory | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.directory = directory or NoGroups()
        self.clock = clock
        self.audit = AuditTrail(settings.audit_log)

    @classmethod
    def open(cls, settings: Settings, **kwargs: Any) -> Rollbot:
        return cls(settings, open_store(settings.database_url), **kwargs)

    # ----------------------------------------------------------------- helpers
    def policy(self, tier: Tier) -> ApprovalPolicy:
        return ApprovalPolicy.for_tier(self.settings.approvals, tier)

    def environment_of(self, incident: Incident) -> EnvironmentConfig:
        if not incident.environment:
            choices = self.environments_to_choose(incident)
            if choices:
                raise RollbotError(
                    f"{incident.ref}: first choose which {incident.tier} environment: "
                    f"{', '.join(choices)}"
                )
            raise RollbotError(f"{incident.ref} has no environment yet; answer the first question")
        return self.settings.environment(incident.environment)

    def _load(self, session: Session, ref: int | str, *, lock: bool = False) -> Incident:
        stmt = (
            select(Incident)
            .where(Incident.id == parse_ref(ref))
            .options(selectinload(Incident.steps), selectinload(Incident.approvals))
        )
        if lock and session.bind is not None and session.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        incident = session.scalars(stmt).first()
        if incident is None:
            raise NotFoundError(f"no incident {ref!r}")
        return incident

    @contextmanager
    def _attempt(self, ref: int | str | None, actor: str, action: str) -> Iterator[Session]:
        """Unit of work for one command; a refusal is audited and re-raised.

        Under a request with an idempotency key (``bot.request_context``) the key is
        stored in the same transaction as the change (or the refusal), so handling the
        same request again acts once: it raises :class:`DuplicateRequestError`.
        """
        request = current_request()
        key = _request_key(request.key, action) if request and request.key else None
        try:
            with self.store.session() as session:
                if key:
                    _raise_if_done(session, key)
                yield session
                if key:
                    incident_id = session.info.get("incident_id") or _maybe_ref(ref)
                    session.add(_key_row(key, incident_id, self.clock()))
        except DuplicateRequestError:
            raise
        except IntegrityError:
            if key:  # a concurrent handler of the same request won the race
                with self.store.session() as session:
                    _raise_if_done(session, key)
            raise
        except RollbotError as exc:
            self._audit_refusal(ref, actor, action, exc, key)
            raise

    def _audit_refusal(
        self, ref: int | str | None, actor: str, action: str, exc: RollbotError, key: str | None
    ) -> None:
        incident_id = _maybe_ref(ref)
        with self.store.session() as session:
            if incident_id is not None and session.get(Incident, incident_id) is None:
                incident_id = None
            self.audit.record(
                session,
                actor=actor,
                kind="refused",
                message=f"Refused {action}: {exc}",
                incident_id=incident_id,
                data={"action": action, "reason": type(exc).__name__},
            )
            if key and session.get(IdempotencyKey, key) is None:
                session.add(_key_row(key, incident_id, self.clock()))

    # ----------------------------------------------------------------- authorization
    def _standing(self, session: Session, incident: Incident, actor: str) -> Standing:
        """What ``actor`` is to ``incident``: requester, approver of its tier, participant."""
        approver = bool(incident.tier) and self.policy(incident.tier).may_approve(  # type: ignore[arg-type]
            actor, self.directory
        )
        acted = session.scalars(
            select(AuditEvent.id)
            .where(
                AuditEvent.incident_id == incident.id,
                AuditEvent.actor == actor,
                AuditEvent.kind != "refused",
            )
            .limit(1)
        ).first()
        return Standing(
            actor=actor,
            requester=actor == incident.requester,
            approver=approver,
            participant=acted is not None,
            approvers=self.policy(incident.tier).describe() if incident.tier else "",  # type: ignore[arg-type]
        )

    def _authorize(self, session: Session, incident: Incident, actor: str, action: Action) -> None:
        authz.check(action, self._standing(session, incident, actor), incident.ref)

    def check_allowed(self, ref: int | str, actor: str, action: Action) -> Incident:
        """Refuse (and audit) unless ``actor`` may do ``action`` on the incident now; for
        adapter steps that come before a core command (e.g. opening the root-cause modal).
        Changes nothing, so it stores no request key."""
        try:
            return self._allowed(ref, actor, action)
        except RollbotError as exc:
            self._audit_refusal(ref, actor, action.value, exc, None)
            raise

    def _allowed(self, ref: int | str, actor: str, action: Action) -> Incident:
        with self.store.read() as session:
            incident = self._load(session, ref)
            self._authorize(session, incident, actor, action)
        return incident

    def refuse(
        self, ref: int | str | None, actor: str, action: str, reason: RollbotError
    ) -> NoReturn:
        """Audit a refusal an adapter decided (a button bound to another incident) and raise it."""
        self._audit_refusal(ref, actor, action, reason, None)
        raise reason

    def _transition(
        self,
        session: Session,
        incident: Incident,
        target: State,
        actor: str,
        action: str,
        message: str,
    ) -> None:
        check_transition(incident.ref, incident.state, target, action)
        before = incident.state
        incident.state = target.value
        incident.updated_at = self.clock()
        if target in (State.RESOLVED, State.CANCELLED):
            incident.closed_at = self.clock()
        self.audit.record(
            session,
            actor=actor,
            kind="transition",
            message=f"{incident.ref} {message}",
            incident_id=incident.id,
            data={"from": before, "to": target.value},
        )
        kind = STATE_NOTICES.get(target)
        if kind is not None:
            self._announce(session, incident, kind, f"{incident.ref} {message}")
        timers.on_transition(session, self, incident, target)

    def _announce(self, session: Session, incident: Incident, kind: NoticeKind, text: str) -> None:
        """Queue what people outside the thread are told, in this transaction (the outbox)."""
        event = outbox.event_for(incident, kind, text)
        outbox.queue(session, incident, event, self.clock(), self.settings)

    def _result(self, ref: int | str) -> Incident:
        with self.store.read() as session:
            return self._load(session, ref)

    def _as_committed(self, incident: Incident) -> Incident:
        """The incident as its command just committed it, without reading it again: sessions
        keep their objects' values on commit, and a command works on the incident with its
        steps and approvals loaded. Anything not loaded or expired is read afresh."""
        state = inspect(incident)
        if state.expired_attributes or state.unloaded or not state.has_identity:
            return self._result(incident.id)
        return incident

    # ----------------------------------------------------------------- queries
    def get(self, ref: int | str) -> Incident:
        return self._result(ref)

    def open_incidents(self) -> list[Incident]:
        with self.store.read() as session:
            return list(
                session.scalars(
                    select(Incident)
                    .where(Incident.state.in_([s.value for s in OPEN_STATES]))
                    .options(selectinload(Incident.steps), selectinload(Incident.approvals))
                    .order_by(Incident.id)
                )
            )

    def ticks(self, ref: int | str) -> dict[str, ChecklistTick]:
        with self.store.read() as session:
            return _ticks_in(session, parse_ref(ref))

    def checklist_and_paging(
        self, ref: int | str
    ) -> tuple[dict[str, ChecklistTick], dict[str, str]]:
        """:meth:`ticks` and :meth:`paging` in one read: a card shows both, every render."""
        with self.store.read() as session:
            incident_id = parse_ref(ref)
            return _ticks_in(session, incident_id), outbox.page_states_in(session, incident_id)

    def approval_status(self, incident: Incident) -> tuple[int, int]:
        policy = self.policy(incident.tier)  # type: ignore[arg-type]
        return len(
            policy.valid(incident.approvals, incident.plan_hash, self.clock())
        ), policy.min_approvals

    # ----------------------------------------------------------------- commands
    def claim_once(self, key: str, scope: str = "request") -> bool:
        """True the first time ``key`` is seen: Slack retries and double clicks act once."""
        try:
            with self.store.session() as session:
                session.add(IdempotencyKey(key=key[:200], scope=scope, created_at=self.clock()))
        except IntegrityError:
            return False
        return True

    def open_incident(
        self,
        requester: str,
        description: str = "",
        environment: str | None = None,
        source: str = "console",
    ) -> Incident:
        tier, env = self._target(environment) if environment else (None, None)
        return self._open(requester, description, env, source, [tier] if tier else [], tier)

    def _target(self, name: str) -> tuple[str, EnvironmentConfig | None]:
        """An environment by name, or a tier: with one environment that one, with several
        none yet (people pick which, see ``choose_environment``)."""
        if name in self.settings.environments:
            env = self.settings.environments[name]
            return env.tier, env
        in_tier = self.settings.environments_in_tier(name)
        if len(in_tier) > 1:
            return name, None
        env = self.settings.resolve_environment(name)  # NotFoundError naming the valid ones
        return env.tier, env

    def environments_to_choose(self, incident: Incident) -> list[str]:
        """The environments of the incident's tier when it has several and none is chosen."""
        if incident.environment or not incident.tier:
            return []
        return [e.name for e in self.settings.environments_in_tier(incident.tier)]

    def choose_environment(self, ref: int | str, name: str, actor: str) -> Incident:
        """Which environment of the incident's tier it is about (the tier has several)."""
        with self._attempt(ref, actor, f"choose environment {name!r}") as session:
            incident = self._load(session, ref, lock=True)
            self._authorize(session, incident, actor, Action.ANSWER)
            choices = self.environments_to_choose(incident)
            if name not in choices:
                raise RollbotError(
                    f"{name!r} is not an environment to choose for {incident.ref}"
                    + (f"; choose one of: {', '.join(choices)}" if choices else "")
                )
            incident.environment = name
            self.audit.record(
                session,
                actor=actor,
                kind="decision",
                message=f"{incident.ref} environment: {name}",
                incident_id=incident.id,
                data={"environment": name},
            )
        return self._result(ref)

    def _open(
        self,
        requester: str,
        description: str,
        env: EnvironmentConfig | None,
        source: str,
        answers: list[str],
        tier: str | None = None,
        follows: Incident | None = None,
    ) -> Incident:
        with self._attempt(None, requester, Action.OPEN.value) as session:
            incident = Incident(
                state=State.OPENED.value,
                environment=env.name if env else None,
                tier=env.tier if env else tier,
                description=scrub_user_text(description.strip()),
                requester=requester,
                source=source,
                answers=list(answers),
                follows_id=follows.id if follows else None,
                created_at=self.clock(),
                updated_at=self.clock(),
                # Every field set, so the committed object is complete (``_as_committed``).
                method=None,
                plan_hash=None,
                root_cause=None,
                notes=None,
                chat_channel=None,
                chat_thread=None,
                chat_message=None,
                closed_at=None,
                steps=[],
                approvals=[],
            )
            session.add(incident)
            session.flush()
            session.info["incident_id"] = incident.id
            where = f" in {env.name} ({env.tier})" if env else ""
            self.audit.record(
                session,
                actor=requester,
                kind="transition",
                message=f"{incident.ref} opened{where}: {incident.description or 'no description'}",
                incident_id=incident.id,
                data={"to": State.OPENED.value, "source": source}
                | ({"follows": follows.ref} if follows else {}),
            )
            self._auto_tick(
                session, incident, {"before.incident_ticket": f"{incident.ref} in rollbot"}
            )
            self._announce(
                session,
                incident,
                "opened",
                f"{incident.ref}: {requester} started a database rollback{where}: "
                f"{incident.description or 'no description'}",
            )
            self._maybe_triaged(session, incident, requester)
        return self._as_committed(incident)

    def undoable(self, incident: Incident) -> str | None:
        """The database a finished restore of ``incident`` kept, which an undo swaps back."""
        for step in incident.steps:
            kept = (step.result or {}).get("kept_database")
            if step.status == StepStatus.SUCCEEDED.value and kept:
                return str(kept)
        return None

    def open_undo(self, ref: int | str, actor: str, source: str = "console") -> Incident:
        """A new incident that undoes ``ref``'s restore: its own plan, approvals and audit."""
        original = self.check_allowed(ref, actor, Action.UNDO)
        kept = self.undoable(original)
        if kept is None:
            exc = RollbotError(f"{original.ref} has no finished restore that kept a database")
            self._audit_refusal(ref, actor, Action.UNDO.value, exc, None)
            raise exc
        env = self.environment_of(original)
        undo = self._open(
            actor,
            f"Undo the restore of {original.ref}: put {kept} back",
            env,
            source,
            original.answers,
            follows=original,
        )
        self.note(original.id, actor, "follow_up", f"{undo.ref} opened to undo this restore")
        return self.choose_method(undo.id, "undo_restore", actor, {"kept": kept})

    def answer(self, ref: int | str, choice_id: str, actor: str) -> Incident:
        """Answer the current decision-tree question."""
        with self._attempt(ref, actor, f"answer {choice_id!r}") as session:
            incident = self._load(session, ref, lock=True)
            self._authorize(session, incident, actor, Action.ANSWER)
            if incident.state != State.OPENED.value:
                check_transition(
                    incident.ref, incident.state, State.TRIAGED, "answer the decision tree of"
                )
            if self.environments_to_choose(incident):
                raise RollbotError(
                    f"first choose which {incident.tier} environment {incident.ref} is about: "
                    f"{', '.join(self.environments_to_choose(incident))}"
                )
            answers = [*incident.answers, choice_id]
            node = RUNBOOK.walk(answers)  # RollbotError listing valid choices on a bad answer
            if len(answers) == 1:
                incident.tier, env = self._target(choice_id)
                incident.environment = env.name if env else None
            incident.answers = answers
            self.audit.record(
                session,
                actor=actor,
                kind="decision",
                message=f"{incident.ref} decision: {choice_id}",
                incident_id=incident.id,
                data={"answers": answers},
            )
            if isinstance(node, Choice):
                self._maybe_triaged(session, incident, actor)
        return self._as_committed(incident)

    def _maybe_triaged(self, session: Session, incident: Incident, actor: str) -> None:
        node = RUNBOOK.walk(incident.answers)
        if isinstance(node, Choice):
            methods = ", ".join(node.methods)
            self._transition(
                session,
                incident,
                State.TRIAGED,
                actor,
                "triage",
                f"triaged: {' > '.join(incident.answers)} -> {methods}",
            )

    def leaf(self, incident: Incident) -> Choice:
        node = RUNBOOK.walk(incident.answers)
        if not isinstance(node, Choice):
            raise RollbotError(f"{incident.ref} is not triaged yet: {node.question}")
        return node

    def allowed_methods(self, incident: Incident) -> list[str]:
        """The leaf's methods (recommended first), then actions that only a common scenario
        names (e.g. stuck-migration triage), which apply in any environment."""
        if incident.follows_id is not None:
            return ["undo_restore"]
        in_tree = {m for _, leaf in RUNBOOK.leaves() for m in leaf.methods}
        methods = list(self.leaf(incident).methods)
        for scenario in RUNBOOK.scenarios:
            methods += [m for m in scenario.methods if m not in in_tree and m not in methods]
        return methods

    def preview(
        self, ref: int | str, method_id: str, options: dict[str, Any] | None = None
    ) -> list[Plan]:
        """Plan previews for a method without choosing it (for the alternatives)."""
        incident = self.get(ref)
        env = self.environment_of(incident)
        return self._plans(method_id, env, self._context(incident, env), options)

    @staticmethod
    def _plans(
        method_id: str,
        env: EnvironmentConfig,
        ctx: StepContext,
        options: dict[str, Any] | None = None,
    ) -> list[Plan]:
        return [build_step(s.kind, s.params).plan(ctx) for s in plan_steps(method_id, env, options)]

    def previews(
        self, incident: Incident, method_ids: Sequence[str]
    ) -> dict[str, list[Plan] | RollbotError]:
        """Each method's plan previews (or why it cannot run), for a card offering them all:
        one read of the incident, and the target read once for all of them."""
        try:
            env = self.environment_of(incident)
        except RollbotError as exc:
            return dict.fromkeys(method_ids, exc)
        out: dict[str, list[Plan] | RollbotError] = {}
        with SharedReads() as reads:
            ctx = self._context(incident, env, reads=reads)
            for method_id in method_ids:
                try:
                    out[method_id] = self._plans(method_id, env, ctx)
                except RollbotError as exc:
                    out[method_id] = exc
        return out

    def choose_method(
        self, ref: int | str, method_id: str, actor: str, options: dict[str, Any] | None = None
    ) -> Incident:
        action = f"choose method {method_id!r}"
        # Drawing up the plan reads providers (a database's size, a snapshot's manifest):
        # done before the write transaction, which then only checks nothing moved.
        try:
            draft = self._draft(ref, method_id, actor, options)
        except RollbotError as exc:
            self._audit_refusal(ref, actor, action, exc, None)
            raise
        with self._attempt(ref, actor, action) as session:
            incident = self._load(session, ref, lock=True)
            self._authorize(session, incident, actor, Action.CHOOSE)
            check_transition(
                incident.ref, incident.state, State.METHOD_CHOSEN, "choose a method for"
            )
            if (incident.environment, incident.answers) != draft.basis:
                raise RollbotError(
                    f"{incident.ref} changed while its plan was drawn up; choose again"
                )
            for old in list(incident.steps):
                session.delete(old)
            session.flush()
            incident.steps.extend(draft.steps())
            incident.method, incident.plan_hash = method_id, draft.plan_hash
            kinds = [st.kind for st in incident.steps]
            self._auto_tick(session, incident, auto_ticks.from_plan(method_title(method_id), kinds))
            self._transition(
                session,
                incident,
                State.METHOD_CHOSEN,
                actor,
                "choose a method for",
                f"method chosen: {method_title(method_id)}",
            )
        return self._result(ref)

    def plan_files(self, ref: int | str) -> list[tuple[str, str]]:
        """The full texts the incident's plan comes with (e.g. a drafted migration)."""
        incident = self.get(ref)
        ctx = self._context(incident, self.environment_of(incident))
        return [
            f for row in incident.steps for f in build_step(row.kind, row.params).plan(ctx).files
        ]

    def restore_sources(self, ref: int | str) -> list[RestoreSource]:
        """What the incident's restore step could restore from (empty without one)."""
        incident = self.get(ref)
        ctx = self._context(incident, self.environment_of(incident))
        for row in incident.steps:
            step = build_step(row.kind, row.params)
            if hasattr(step, "sources"):
                return step.sources(ctx)
        return []

    def replan(
        self,
        ref: int | str,
        actor: str,
        snapshot: str | None = None,
        restore_to: datetime | None = None,
        **flags: bool,
    ) -> Incident:
        """Draw the plan up again with another snapshot, restore time or restore option;
        approvals of the old plan no longer count (they are bound to its hash)."""
        incident = self.get(ref)
        current = next((r.params for r in incident.steps if "snapshot" in r.params), None)
        if not incident.method or current is None:
            raise RollbotError(f"{incident.ref} has no restore in its plan; choose a method first")
        options = restore_options(current, snapshot, restore_to, **flags)
        return self.choose_method(ref, incident.method, actor, options)

    def _draft(
        self, ref: int | str, method_id: str, actor: str, options: dict[str, Any] | None
    ) -> Draft:
        """The steps ``method_id`` means for the incident, pinned and planned (reads only)."""
        incident = self._allowed(ref, actor, Action.CHOOSE)
        check_transition(incident.ref, incident.state, State.METHOD_CHOSEN, "choose a method for")
        allowed = self.allowed_methods(incident)
        if method_id not in allowed:
            raise RollbotError(
                f"{method_id!r} is not a runbook method for {' > '.join(incident.answers)}; "
                f"choose one of: {', '.join(allowed)}"
            )
        env = self.environment_of(incident)
        specs = plan_steps(method_id, env, options)
        ctx = self._context(incident, env)
        drafted: list[tuple[StepSpec, dict[str, Any], bool, str]] = []
        for spec in specs:
            step = build_step(spec.kind, spec.params)
            params = spec.params
            if hasattr(step, "pin"):  # resolve choices now: the approved plan is what runs
                params = step.pin(ctx)
                step = build_step(spec.kind, params)
            drafted.append((spec, params, type(step).destructive, step.plan(ctx).text()))
        digest = hashlib.sha256(
            json.dumps(
                [
                    method_id,
                    [s.kind for s in specs],
                    [d[1] for d in drafted],
                    [d[3] for d in drafted],
                ],
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        return Draft((incident.environment, list(incident.answers)), drafted, digest)

    def request_approval(self, ref: int | str, actor: str) -> Incident:
        with self._attempt(ref, actor, "request approval") as session:
            incident = self._load(session, ref, lock=True)
            self._authorize(session, incident, actor, Action.REQUEST_APPROVAL)
            self._transition(
                session,
                incident,
                State.AWAITING_APPROVAL,
                actor,
                "request approval for",
                f"awaiting approval of the {incident.method} plan",
            )
        return self._result(ref)

    def approve(self, ref: int | str, approver: str) -> ApprovalOutcome:
        with self._attempt(ref, approver, "approve") as session:
            incident = self._load(session, ref, lock=True)
            self._authorize(session, incident, approver, Action.APPROVE)
            if incident.state != State.AWAITING_APPROVAL.value:
                raise RollbotError(
                    f"{incident.ref} is {in_words(incident.state)}; approvals are taken only "
                    "while it is waiting for approval"
                )
            policy = self.policy(incident.tier)  # type: ignore[arg-type]
            policy.check(approver=approver, requester=incident.requester, directory=self.directory)
            now = decision_time(self.clock())
            if any(
                a.approver == approver
                for a in policy.valid(incident.approvals, incident.plan_hash, now)
            ):
                raise RollbotError(f"{approver} has already approved this plan of {incident.ref}")
            incident.approvals.append(
                Approval(
                    plan_hash=incident.plan_hash or "",
                    approver=approver,
                    created_at=now,
                    expires_at=now + policy.ttl,
                )
            )
            session.flush()
            valid = len(policy.valid(incident.approvals, incident.plan_hash, now))
            self.audit.record(
                session,
                actor=approver,
                kind="approval",
                message=f"{incident.ref} approved by {approver} ({valid}/{policy.min_approvals})",
                incident_id=incident.id,
                data={
                    "expires_at": (now + policy.ttl).isoformat(),
                    "plan_hash": incident.plan_hash,
                },
            )
        return ApprovalOutcome(self._result(ref), valid, policy.min_approvals)

    def start(self, ref: int | str, actor: str) -> Incident:
        """Queue the plan's steps for the executor, once approvals (still valid now) suffice."""
        with self._attempt(ref, actor, "start") as session:
            incident = self._load(session, ref, lock=True)
            self._authorize(session, incident, actor, Action.RUN)
            policy = self.policy(incident.tier)  # type: ignore[arg-type]
            if incident.state == State.METHOD_CHOSEN.value and policy.min_approvals == 0:
                self._transition(
                    session,
                    incident,
                    State.AWAITING_APPROVAL,
                    actor,
                    "start",
                    "needs no approval in this tier",
                )
            check_transition(incident.ref, incident.state, State.RUNNING, "start")
            at = decision_time(self.clock())
            valid = len(policy.valid(incident.approvals, incident.plan_hash, at))
            if valid < policy.min_approvals:
                expired = [
                    a.approver
                    for a in incident.approvals
                    if a.plan_hash == incident.plan_hash and a.expires_at <= at
                ]
                hint = f"; expired: {', '.join(expired)}" if expired else ""
                raise RollbotError(
                    f"{incident.ref} needs {policy.min_approvals} valid approval(s), has {valid}{hint}"
                )
            for step in incident.steps:
                if step.status == StepStatus.PENDING.value:
                    step.status = StepStatus.QUEUED.value
                    step.queued_at = self.clock()
            self._transition(
                session,
                incident,
                State.RUNNING,
                actor,
                "start",
                f"running the {incident.method} plan",
            )
        return self._result(ref)

    def _auto_tick(self, session: Session, incident: Incident, ticks: dict[str, str]) -> None:
        """Tick, as ``rollbot`` with its evidence, what rollbot did and nobody has touched."""
        for item_id, evidence in ticks.items():
            exists = session.scalars(
                select(ChecklistTick.id).where(
                    ChecklistTick.incident_id == incident.id, ChecklistTick.item_id == item_id
                )
            ).first()
            if exists is not None:
                continue  # a person ticked or unticked it: theirs stands
            session.add(
                ChecklistTick(
                    incident_id=incident.id,
                    item_id=item_id,
                    ticked=True,
                    actor=auto_ticks.AUTO_ACTOR,
                    at=self.clock(),
                    evidence=scrub_user_text(evidence),
                )
            )
            self.audit.record(
                session,
                actor=auto_ticks.AUTO_ACTOR,
                kind="checklist",
                message=f"{incident.ref} checklist: {item_id} ticked by rollbot ({evidence})",
                incident_id=incident.id,
                data={"item": item_id, "evidence": evidence},
            )

    def auto_tick(self, ref: int | str, item_id: str, evidence: str) -> None:
        """An adapter did a checklist item itself (e.g. told the team in Slack)."""
        with self.store.session() as session:
            incident = session.get(Incident, parse_ref(ref))  # the ticks need no steps
            if incident is None:
                raise NotFoundError(f"no incident {ref!r}")
            if incident.state in OPEN_STATES:
                self._auto_tick(session, incident, {item_id: evidence})

    def tick(self, ref: int | str, item_id: str, actor: str, ticked: bool = True) -> ChecklistTick:
        valid_ids = {i.id for i in (*RUNBOOK.before_checklist, *RUNBOOK.after_checklist)}
        with self._attempt(ref, actor, f"tick {item_id!r}") as session:
            incident = self._load(session, ref)
            self._authorize(session, incident, actor, Action.TICK)
            if item_id not in valid_ids:
                raise RollbotError(f"unknown checklist item {item_id!r}")
            if incident.state in (State.RESOLVED.value, State.CANCELLED.value):
                raise RollbotError(
                    f"{incident.ref} is {in_words(incident.state)}; its checklists are closed"
                )
            row = session.scalars(
                select(ChecklistTick).where(
                    ChecklistTick.incident_id == incident.id, ChecklistTick.item_id == item_id
                )
            ).first()
            if row is None:
                row = ChecklistTick(
                    incident_id=incident.id,
                    item_id=item_id,
                    ticked=ticked,
                    actor=actor,
                    at=self.clock(),
                )
                session.add(row)
            else:
                row.ticked, row.actor, row.at = ticked, actor, self.clock()
            self.audit.record(
                session,
                actor=actor,
                kind="checklist",
                message=f"{incident.ref} checklist {'ticked' if ticked else 'unticked'}: {item_id}",
                incident_id=incident.id,
            )
            return row

    def unticked(self, ref: int | str) -> list[str]:
        ticks = self.ticks(ref)
        return [
            i.text
            for i in (*RUNBOOK.before_checklist, *RUNBOOK.after_checklist)
            if not (ticks.get(i.id) and ticks[i.id].ticked)
        ]

    def resolve(self, ref: int | str, actor: str, *, confirm_unticked: bool = False) -> Incident:
        missing = self.unticked(ref)
        with self._attempt(ref, actor, "resolve") as session:
            incident = self._load(session, ref, lock=True)
            self._authorize(session, incident, actor, Action.RESOLVE)
            check_transition(incident.ref, incident.state, State.RESOLVED, "resolve")
            if missing and not confirm_unticked:
                raise RollbotError(
                    f"{incident.ref} has {len(missing)} unticked checklist item(s) "
                    f"({'; '.join(missing[:3])}{'; ...' if len(missing) > 3 else ''}); confirm to resolve anyway"
                )
            note = f" with {len(missing)} unticked checklist item(s), confirmed" if missing else ""
            self._transition(session, incident, State.RESOLVED, actor, "resolve", f"resolved{note}")
        return self._result(ref)

    def cancel(self, ref: int | str, actor: str, reason: str = "") -> Incident:
        with self._attempt(ref, actor, "cancel") as session:
            incident = self._load(session, ref, lock=True)
            self._authorize(session, incident, actor, Action.CANCEL)
            check_transition(incident.ref, incident.state, State.CANCELLED, "cancel")
            for step in incident.steps:
                if step.status in (StepStatus.PENDING.value, StepStatus.QUEUED.value):
                    step.status = StepStatus.CANCELLED.value
            self._transition(
                session,
                incident,
                State.CANCELLED,
                actor,
                "cancel",
                f"cancelled{': ' + reason if reason else ''}",
            )
        return self._as_committed(incident)

    def paging(self, ref: int | str) -> dict[str, str]:
        """Per paged audience ("oncall", "cto"): "triggered" or "acknowledged"."""
        return outbox.page_states(self.store, parse_ref(ref))

    def acknowledge_page(self, ref: int | str, actor: str) -> Incident:
        """Stop PagerDuty paging for the incident (its alerts are acknowledged)."""
        with self._attempt(ref, actor, "acknowledge the page") as session:
            incident = self._load(session, ref, lock=True)
            self._authorize(session, incident, actor, Action.ACKNOWLEDGE)
            states = outbox.page_states_in(session, incident.id)
            if not any(v == "triggered" for v in states.values()):
                raise RollbotError(
                    f"{incident.ref} has no open page to acknowledge; nothing was done"
                )
            self.audit.record(
                session,
                actor=actor,
                kind="note",
                message=f"{incident.ref} page acknowledged by {actor}",
                incident_id=incident.id,
            )
            self._announce(
                session, incident, "acknowledged", f"{incident.ref} acknowledged by {actor}"
            )
        return self._result(ref)

    def record_root_cause(
        self, ref: int | str, actor: str, root_cause: str, notes: str = ""
    ) -> Incident:
        with self._attempt(ref, actor, "record root cause") as session:
            incident = self._load(session, ref)
            self._authorize(session, incident, actor, Action.ROOT_CAUSE)
            root_cause, notes = scrub_user_text(root_cause.strip()), scrub_user_text(notes.strip())
            incident.root_cause, incident.notes = root_cause, notes
            self.audit.record(
                session,
                actor=actor,
                kind="note",
                message=f"{incident.ref} root cause recorded: {root_cause}",
                incident_id=incident.id,
                data={"notes": notes},
            )
            self._auto_tick(
                session, incident, {"before.root_cause": f"recorded: {root_cause[:120]}"}
            )
        return self._result(ref)

    def incident_for_message(self, channel: str, ts: str, thread_ts: str | None) -> int | None:
        """The incident whose card, or else whose thread, holds the message (channel, ts).

        A card decides on its own, and the thread the message claims to be in must then be
        that card's thread; only a message that is no card is placed by its thread.
        """
        with self.store.read() as session:
            card = session.execute(
                select(Incident.id, Incident.chat_thread).where(
                    Incident.chat_channel == channel, Incident.chat_message == ts
                )
            ).first()
            if card is not None:
                return card.id if thread_ts in (None, card.chat_thread) else None
            return session.scalars(
                select(Incident.id).where(
                    Incident.chat_channel == channel, Incident.chat_thread == (thread_ts or ts)
                )
            ).first()

    def installation_secret(self, name: str) -> bytes:
        """A random 32-byte key made once per installation (the first caller creates it)."""
        with self.store.read() as session:
            row = session.get(InstallationSecret, name)
        if row is None:
            try:
                with self.store.session() as session:
                    session.add(
                        InstallationSecret(
                            name=name, value=secrets.token_hex(32), created_at=self.clock()
                        )
                    )
            except IntegrityError:
                pass  # another process made it first
            with self.store.read() as session:
                row = session.get(InstallationSecret, name)
        assert row is not None
        register_secret(row.value)
        return bytes.fromhex(row.value)

    def forget_old_requests(self, older_than: timedelta) -> None:
        """Drop request bookkeeping nobody can need any more (finished inbox rows, idempotency
        keys and issued tokens older than ``older_than``); the audit trail is never pruned."""
        cutoff = self.clock() - older_than
        with self.store.inbox_side.session() as session:
            session.execute(
                delete(InboxItem).where(
                    InboxItem.status.not_in(("pending", "claimed")), InboxItem.finished_at < cutoff
                )
            )
        with self.store.session() as session:
            session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))
            session.execute(delete(IssuedToken).where(IssuedToken.created_at < cutoff))

    def issue_token(self, incident_id: int, actor: str, purpose: str) -> str:
        """A token for a modal or an ephemeral button, recorded for :meth:`token_matches`."""
        token = secrets.token_urlsafe(18)
        with self.store.session() as session:
            session.add(
                IssuedToken(
                    token=token,
                    incident_id=incident_id,
                    actor=actor,
                    purpose=purpose,
                    created_at=self.clock(),
                )
            )
        return token

    def token_matches(self, token: str, incident_id: int, actor: str, purpose: str) -> bool:
        """True when rollbot issued ``token`` to ``actor`` for this incident and purpose."""
        if not token or len(token) > 64:
            return False
        with self.store.read() as session:
            row = session.get(IssuedToken, token)
        return bool(
            row and row.incident_id == incident_id and row.actor == actor and row.purpose == purpose
        )

    def chat_of(self, ref: int | str) -> tuple[str | None, str | None, str | None]:
        """Where the incident lives in chat (channel, thread, card message), in one read:
        enough to tell whether someone else posted its thread meanwhile."""
        stmt = select(Incident.chat_channel, Incident.chat_thread, Incident.chat_message).where(
            Incident.id == parse_ref(ref)
        )
        with self.store.single_reads.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise NotFoundError(f"no incident {ref!r}")
        return row[0], row[1], row[2]

    def attach_chat(
        self, ref: int | str, channel: str, thread: str, message: str | None = None
    ) -> None:
        """Where the incident lives in chat; a missing card message keeps the one recorded."""
        values = {"chat_channel": channel, "chat_thread": thread}
        if message:
            values["chat_message"] = message
        if not self.store.execute_once(
            update(Incident).where(Incident.id == parse_ref(ref)).values(values)
        ):
            raise NotFoundError(f"no incident {ref!r}")

    def decide_step(self, ref: int | str, step_id: int, actor: str, decision: str) -> Incident:
        """A person decides about a step: one a crash interrupted (retry, skip or abandon) or
        one that waits for them (done, abandon).

        Retrying a destructive step is a new decision to run it: the earlier approvals
        do not carry over, the incident waits for a fresh approval of the re-run.
        """
        action = DECISIONS.get(decision)
        if action is None:
            raise RollbotError(f"unknown decision {decision!r}; use {', '.join(DECISIONS)}")
        with self._attempt(ref, actor, f"{decision} step") as session:
            incident = self._load(session, ref, lock=True)
            self._authorize(session, incident, actor, action)
            step = next((s for s in incident.steps if s.id == step_id), None)
            if step is None:
                raise NotFoundError(f"{incident.ref} has no step {step_id}")
            if decision not in DECIDABLE.get(step.status, ()):
                allowed = "; ".join(f"{' or '.join(d)} when {s}" for s, d in DECIDABLE.items())
                raise RollbotError(
                    f"step {step.seq} of {incident.ref} is {step.status}: cannot {decision} "
                    f"it ({allowed})"
                )
            if decision == "done":
                self._done_by_person(session, incident, step, actor)
            elif decision == "retry":
                self._retry(session, incident, step, actor)
            elif decision == "skip":
                step.status = StepStatus.SKIPPED.value
            else:
                step.status = StepStatus.FAILED.value
                step.error = "abandoned after an interruption"
                self._cancel_rest(incident)
                self._transition(
                    session,
                    incident,
                    State.FAILED,
                    actor,
                    "abandon",
                    f"failed: step {step.seq} abandoned",
                )
            self.audit.record(
                session,
                actor=actor,
                kind="decision",
                message=f"{incident.ref} step {step.seq} ({step.title}): {decision}"
                + (" after interruption" if decision != "done" else f" (by {actor})"),
                incident_id=incident.id,
            )
        return self._result(ref)

    def _retry(self, session: Session, incident: Incident, step: Step, actor: str) -> None:
        # A person decided to send it again: what the crashed attempt meant to send was
        # shown to them (the interruption's leftovers) and is no longer an open operation.
        step.external = None
        policy = self.policy(incident.tier)  # type: ignore[arg-type]
        if not (step.destructive and policy.min_approvals):
            step.status, step.queued_at = StepStatus.QUEUED.value, self.clock()
            return
        step.status = StepStatus.PENDING.value
        incident.plan_hash = hashlib.sha256(
            f"{incident.plan_hash}|re-run step {step.id} after attempt {step.attempt}".encode()
        ).hexdigest()
        self._transition(
            session,
            incident,
            State.AWAITING_APPROVAL,
            actor,
            "retry",
            f"awaiting a fresh approval to re-run step {step.seq} ({step.title}) "
            "after its interruption",
        )

    def _done_by_person(self, session: Session, incident: Incident, step: Step, actor: str) -> None:
        """A person did a waiting step: it succeeded, by them; the plan goes on (or ends)."""
        step.status, step.finished_at = StepStatus.SUCCEEDED.value, self.clock()
        step.result = {
            **(step.result or {}),
            "summary": f"done by {actor}",
            "done_by": actor,
            "done_at": step.finished_at.isoformat(),
        }
        self._auto_tick(session, incident, auto_ticks.from_step(step.kind, step.title, step.result))
        if all(s.status in {x.value for x in STEP_DONE} for s in incident.steps):
            self._transition(
                session,
                incident,
                State.VERIFYING,
                actor,
                "verify",
                "all steps done; verify and tick the after-rollback checklist",
            )

    @staticmethod
    def _cancel_rest(incident: Incident) -> None:
        for later in incident.steps:
            if later.status in (StepStatus.PENDING.value, StepStatus.QUEUED.value):
                later.status = StepStatus.CANCELLED.value

    def note(
        self,
        ref: int | str | None,
        actor: str,
        kind: str,
        message: str,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Record an audit event for something an adapter or provider did."""
        with self.store.session() as session:
            self.audit.record(
                session,
                actor=actor,
                kind=kind,
                message=message,
                incident_id=parse_ref(ref) if ref is not None else None,
                data=data,
            )

    def _context(
        self,
        incident: Incident,
        env: EnvironmentConfig,
        report: Callable[[str], None] | None = None,
        reads: SharedReads | None = None,
    ) -> StepContext:
        shared: dict[str, Any] = {}
        results: list[dict[str, Any]] = []
        for step in sorted(incident.steps, key=lambda s: s.seq):
            if step.status in {s.value for s in STEP_DONE} and step.result:
                shared[step.kind] = step.result
                results.append(step.result)
        return StepContext(
            incident_id=incident.id,
            settings=self.settings,
            environment=env,
            report=report or (lambda _text: None),
            audit=lambda kind, message, data: self.note(
                incident.id, "rollbot", kind, message, data
            ),
            shared=shared,
            results=results,
            facts={
                "incident": incident.ref,
                "environment": env.name,
                "tier": env.tier,
                "requester": incident.requester,
                "method": incident.method or "",
            },
            reads=reads,
        )
