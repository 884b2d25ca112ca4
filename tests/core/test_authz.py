"""Who may do what: every core action refuses (and audits) someone without the role it needs;
requests are exactly-once by key; decisions use the time a request was accepted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.authz import REQUIRED_ROLES, Action
from bot.errors import DuplicateRequestError, NotAuthorizedError, RollbotError
from bot.lifecycle import StepStatus
from bot.models import AuditEvent, Step
from bot.request_context import MAX_WAIT, RequestContext, handling
from bot.service import Rollbot
from tests.core_fixtures import Clock

Attempt = Callable[[Rollbot, int, str], object]


def _interrupt_first_step(bot: Rollbot, incident_id: int) -> int:
    with bot.store.session() as s:
        step = s.scalars(select(Step).where(Step.incident_id == incident_id)).first()
        assert step is not None
        step.status = StepStatus.INTERRUPTED.value
        return step.id


def _step_id(bot: Rollbot, incident_id: int) -> int:
    return bot.get(incident_id).steps[0].id


ATTEMPTS: dict[Action, Attempt] = {
    Action.ANSWER: lambda b, i, who: b.answer(i, "app_broken", who),
    Action.CHOOSE: lambda b, i, who: b.choose_method(i, "app_rollback", who),
    Action.REQUEST_APPROVAL: lambda b, i, who: b.request_approval(i, who),
    Action.APPROVE: lambda b, i, who: b.approve(i, who),
    Action.RUN: lambda b, i, who: b.start(i, who),
    Action.RETRY_STEP: lambda b, i, who: b.decide_step(i, _step_id(b, i), who, "retry"),
    Action.SKIP_STEP: lambda b, i, who: b.decide_step(i, _step_id(b, i), who, "skip"),
    Action.ABANDON_STEP: lambda b, i, who: b.decide_step(i, _step_id(b, i), who, "abandon"),
    Action.CONFIRM_STEP: lambda b, i, who: b.decide_step(i, _step_id(b, i), who, "done"),
    Action.TICK: lambda b, i, who: b.tick(i, "before.snapshot", who),
    Action.ROOT_CAUSE: lambda b, i, who: b.record_root_cause(i, who, "a bad migration"),
    Action.CANCEL: lambda b, i, who: b.cancel(i, who),
    Action.RESOLVE: lambda b, i, who: b.resolve(i, who, confirm_unticked=True),
    Action.UNDO: lambda b, i, who: b.open_undo(i, who),
}


def test_every_restricted_action_is_covered_here() -> None:
    restricted = {a for a, roles in REQUIRED_ROLES.items() if roles != {"member"}}
    assert restricted == set(ATTEMPTS)


def _running_app_rollback(bot: Rollbot) -> int:
    incident = bot.open_incident("alice", "deploy broke the app", environment="production")
    bot.answer(incident.id, "app_broken", "alice")
    bot.choose_method(incident.id, "app_rollback", "alice")
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    _interrupt_first_step(bot, incident.id)
    return incident.id


@pytest.mark.parametrize("action", list(ATTEMPTS), ids=lambda a: a.name.lower())
def test_an_outsider_is_refused_every_action_and_it_is_audited(
    bot: Rollbot, action: Action
) -> None:
    """mallory is neither requester nor approver nor on the incident (its state does not
    matter: authorization is checked before anything else)."""
    incident_id = _running_app_rollback(bot)
    before = bot.get(incident_id)
    with pytest.raises(NotAuthorizedError, match=f"mallory may not {action.value} in INC-"):
        ATTEMPTS[action](bot, incident_id, "mallory")
    after = bot.get(incident_id)
    assert (after.state, [s.status for s in after.steps], len(after.approvals)) == (
        before.state,
        [s.status for s in before.steps],
        len(before.approvals),
    )
    with bot.store.session() as s:
        refused = s.scalars(
            select(AuditEvent).where(
                AuditEvent.kind == "refused", AuditEvent.incident_id == incident_id
            )
        ).all()
    assert [e.actor for e in refused] == ["mallory"]
    assert refused[0].data["reason"] == "NotAuthorizedError"


def test_someone_who_acted_may_tick_and_cancel(bot: Rollbot) -> None:
    incident = bot.open_incident("dave", "not an approver, but the requester", "staging")
    bot.tick(incident.id, "before.snapshot", "dave")  # the requester is a participant
    with pytest.raises(
        NotAuthorizedError, match=r"or someone already working on the incident may$"
    ):
        bot.tick(incident.id, "before.notify_team", "erin")
    bot.tick(incident.id, "before.notify_team", "carol")  # an approver of the tier
    assert bot.cancel(incident.id, "dave").state == "cancelled"


def test_the_same_request_acts_once(bot: Rollbot) -> None:
    with handling(RequestContext(key="slack:cmd:1")):
        opened = bot.open_incident("alice", "once", environment="production")
    with pytest.raises(DuplicateRequestError) as dup, handling(RequestContext(key="slack:cmd:1")):
        bot.open_incident("alice", "once", environment="production")
    assert dup.value.incident_id == opened.id
    assert [i.description for i in bot.open_incidents()].count("once") == 1

    bot.answer(opened.id, "app_broken", "alice")
    bot.choose_method(opened.id, "app_rollback", "alice")
    bot.request_approval(opened.id, "alice")
    for _ in range(3):
        try:
            with handling(RequestContext(key="slack:click:2")):
                bot.approve(opened.id, "bob")
        except DuplicateRequestError:
            pass
    assert len(bot.get(opened.id).approvals) == 1
    # A refusal is remembered too: handling it again audits nothing more.
    for _ in range(2):
        with pytest.raises(RollbotError), handling(RequestContext(key="slack:click:3")):
            bot.approve(opened.id, "alice")
    with bot.store.session() as s:
        refused = s.scalars(select(AuditEvent).where(AuditEvent.kind == "refused")).all()
    assert len(refused) == 1


def test_decisions_use_the_time_the_request_was_accepted(bot: Rollbot, clock: Clock) -> None:
    incident = bot.open_incident("alice", "slow queue", environment="production")
    bot.answer(incident.id, "app_broken", "alice")
    bot.choose_method(incident.id, "app_rollback", "alice")
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")  # production approvals live 30 minutes
    clicked = clock.now + timedelta(minutes=29)
    clock.advance(minutes=31)  # the click waited two minutes in the inbox
    with handling(RequestContext(key="run-1", accepted_at=clicked)):
        assert bot.start(incident.id, "alice").state == "running"

    other = bot.open_incident("alice", "too late", environment="production")
    bot.answer(other.id, "app_broken", "alice")
    bot.choose_method(other.id, "app_rollback", "alice")
    bot.request_approval(other.id, "alice")
    bot.approve(other.id, "bob")
    clicked = clock.now + timedelta(minutes=29)
    clock.advance(minutes=30)
    clock.now += MAX_WAIT  # beyond the bound the accepted time no longer counts
    with (
        pytest.raises(RollbotError, match="expired: bob"),
        handling(RequestContext(key="run-2", accepted_at=clicked)),
    ):
        bot.start(other.id, "alice")
