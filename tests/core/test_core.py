"""The incident core on the fake provider and a SQLite store (no PostgreSQL).

A few of these also run on a PostgreSQL state store: tests/test_store_on_postgres.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.audit import timeline
from bot.config import Settings
from bot.errors import (
    ApprovalRefusedError,
    IllegalTransitionError,
    NotAuthorizedError,
    NotFoundError,
    RollbotError,
)
from bot.lifecycle import State
from bot.models import AuditEvent
from bot.service import Rollbot
from tests.core_fixtures import Clock
from tests.fake_provider import FakePlatform, reset_platform, write_fake_config

PRODUCTION_URL = "fake://main"


@pytest.fixture(autouse=True)
def production_database(monkeypatch: pytest.MonkeyPatch) -> FakePlatform:
    """The production environment points at the fake platform's database "main", whose
    head is the bad migration (the good state is one head back)."""
    monkeypatch.setenv("ROLLBOT_TEST_PRODUCTION_URL", PRODUCTION_URL)
    return reset_platform(databases={"main": "0002_bad"})


def events(bot: Rollbot, incident_id: int) -> list[AuditEvent]:
    with bot.store.session() as s:
        return list(timeline(s, incident_id))


def triaged_production(
    bot: Rollbot, problem: str = "data_corruption", requester: str = "alice"
) -> int:
    incident = bot.open_incident(
        requester, "users.new_column breaks login", environment="production"
    )
    return bot.answer(incident.id, problem, requester).id


def test_walk_to_pitr_records_decisions(bot: Rollbot) -> None:
    incident_id = triaged_production(bot)
    incident = bot.get(incident_id)
    assert incident.state == State.TRIAGED
    assert incident.answers == ["production", "data_corruption"]
    assert bot.leaf(incident).methods[0] == "pitr"
    incident = bot.choose_method(incident_id, "pitr", "alice")
    assert incident.state == State.METHOD_CHOSEN
    assert incident.steps and incident.plan_hash
    assert any("restore point" in s.plan_text or "lost" in s.plan_text for s in incident.steps)
    kinds = [e.kind for e in events(bot, incident_id)]
    kinds = [k for k in kinds if k != "checklist"]  # rollbot ticks what it did itself
    assert kinds[:3] == ["transition", "decision", "transition"]


def test_unknown_incident_and_bad_answer(bot: Rollbot) -> None:
    with pytest.raises(NotFoundError, match="no incident"):
        bot.get("INC-999")
    with pytest.raises(NotFoundError, match="not an incident id"):
        bot.get("banana")
    incident = bot.open_incident("alice", "x")
    with pytest.raises(RollbotError, match="production"):
        bot.answer(incident.id, "moon", "alice")
    assert bot.get(incident.id).answers == []


def test_self_approval_in_production_is_refused_and_audited(bot: Rollbot) -> None:
    incident_id = triaged_production(bot)
    bot.choose_method(incident_id, "pitr", "alice")
    bot.request_approval(incident_id, "alice")
    with pytest.raises(ApprovalRefusedError, match="cannot approve it in production"):
        bot.approve(incident_id, "alice")
    assert bot.get(incident_id).approvals == []
    refused = [e for e in events(bot, incident_id) if e.kind == "refused"]
    assert refused and "alice" in refused[-1].message
    with pytest.raises(RollbotError, match="needs 1 valid approval"):
        bot.start(incident_id, "alice")
    assert bot.get(incident_id).state == State.AWAITING_APPROVAL


def test_non_approver_is_refused_and_audited(bot: Rollbot) -> None:
    incident_id = triaged_production(bot)
    bot.choose_method(incident_id, "pitr", "alice")
    bot.request_approval(incident_id, "alice")
    with pytest.raises(NotAuthorizedError, match=r"mallory may not approve in INC-.*approver"):
        bot.approve(incident_id, "mallory")
    assert bot.get(incident_id).approvals == []
    assert any(e.kind == "refused" and "mallory" in e.message for e in events(bot, incident_id))


def test_expired_approval_no_longer_counts(bot: Rollbot, clock: Clock) -> None:
    incident_id = triaged_production(bot)
    bot.choose_method(incident_id, "pitr", "alice")
    bot.request_approval(incident_id, "alice")
    outcome = bot.approve(incident_id, "bob")
    assert outcome.satisfied
    clock.advance(minutes=31)
    with pytest.raises(RollbotError, match="expired: bob"):
        bot.start(incident_id, "alice")
    assert bot.get(incident_id).state == State.AWAITING_APPROVAL
    bot.approve(incident_id, "carol")
    assert bot.start(incident_id, "alice").state == State.RUNNING


def test_changing_the_method_voids_approvals(bot: Rollbot) -> None:
    incident_id = triaged_production(bot)
    bot.choose_method(incident_id, "pitr", "alice")
    bot.request_approval(incident_id, "alice")
    bot.approve(incident_id, "bob")
    bot.choose_method(incident_id, "pg_dump_restore", "alice")
    bot.request_approval(incident_id, "alice")
    assert bot.approval_status(bot.get(incident_id)) == (0, 1)


def test_illegal_transition_is_refused_changes_nothing_and_is_audited(bot: Rollbot) -> None:
    incident_id = triaged_production(bot)
    before = bot.get(incident_id)
    with pytest.raises(
        IllegalTransitionError, match=r"cannot resolve INC-\d+: it is triaged and waiting"
    ):
        bot.resolve(incident_id, "alice", confirm_unticked=True)
    after = bot.get(incident_id)
    assert (after.state, after.updated_at) == (before.state, before.updated_at)
    assert events(bot, incident_id)[-1].kind == "refused"


def test_method_outside_the_branch_is_refused(bot: Rollbot) -> None:
    incident_id = triaged_production(bot, "schema_only")
    with pytest.raises(RollbotError, match="not a runbook method"):
        bot.choose_method(incident_id, "dev_reset", "alice")


def test_idempotency_key_claims_once(bot: Rollbot) -> None:
    assert bot.claim_once("slack:click:abc")
    assert not bot.claim_once("slack:click:abc")


def test_checklists_and_resolution_need_confirmation(bot: Rollbot) -> None:
    from bot.executor import Executor

    incident_id = triaged_production(bot, "app_broken")
    bot.choose_method(incident_id, "app_rollback", "alice")
    bot.request_approval(incident_id, "alice")
    bot.approve(incident_id, "bob")
    bot.start(incident_id, "alice")
    incident = Executor(bot).run_incident(incident_id)
    assert incident.state == State.VERIFYING, [s.error for s in incident.steps]
    bot.tick(incident_id, bot_items()[0], "carol")
    with pytest.raises(RollbotError, match="unticked checklist item"):
        bot.resolve(incident_id, "alice")
    assert bot.get(incident_id).state == State.VERIFYING
    ticks = bot.ticks(incident_id)
    assert ticks[bot_items()[0]].actor == "carol"
    assert bot.resolve(incident_id, "alice", confirm_unticked=True).state == State.RESOLVED


def bot_items() -> list[str]:
    from bot.runbook import RUNBOOK

    return [i.id for i in (*RUNBOOK.before_checklist, *RUNBOOK.after_checklist)]


def test_audit_events_also_go_to_the_runbook_format_file(bot: Rollbot, settings: Settings) -> None:
    incident = bot.open_incident("alice", "login broken, db postgresql://app:hunter2@db/prod")
    assert settings.audit_log is not None
    lines = settings.audit_log.read_text().splitlines()
    assert lines, "no audit.log lines"
    opened = [ln for ln in lines if f"{incident.ref} opened" in ln]
    assert len(opened) == 1
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ - {incident.ref} opened: .*", opened[0]
    )
    assert "hunter2" not in settings.audit_log.read_text()
    assert all("hunter2" not in e.message for e in events(bot, incident.id))


def test_team_commands_see_database_url_and_environment(
    tmp_path: Path, production_database: FakePlatform, bot: Rollbot
) -> None:
    from bot.config import load_settings
    from bot.executor import Executor

    check = "test $ENVIRONMENT = production && test $DATABASE_URL = $ROLLBOT_TEST_PRODUCTION_URL"
    (tmp_path / "other").mkdir()
    cfg = write_fake_config(
        tmp_path / "other", f"sqlite:///{tmp_path / 'other.db'}", app_rollback=check
    )
    rollbot = Rollbot.open(load_settings(cfg))
    incident_id = triaged_production(rollbot, "app_broken")
    rollbot.choose_method(incident_id, "app_rollback", "alice")
    rollbot.request_approval(incident_id, "alice")
    rollbot.approve(incident_id, "bob")
    rollbot.start(incident_id, "alice")
    done = Executor(rollbot).run_incident(incident_id)
    rollbot.store.dispose()
    assert done.steps[0].status == "succeeded", done.steps[0].error


def test_queued_work_of_a_stopped_process_is_resumable_once(bot: Rollbot) -> None:
    from bot.executor import Executor

    incident_id = triaged_production(bot, "app_broken")
    bot.choose_method(incident_id, "app_rollback", "alice")
    bot.request_approval(incident_id, "alice")
    bot.approve(incident_id, "bob")
    bot.start(incident_id, "alice")  # queued; the process "stops" before running it
    executor = Executor(bot)
    assert executor.resumable() == [incident_id]
    assert executor.run_incident(incident_id).state == State.VERIFYING
    assert executor.resumable() == []


def test_retrying_an_interrupted_restore_needs_a_fresh_approval(bot: Rollbot) -> None:
    from sqlalchemy import update

    from bot.models import Step
    from bot.steps import SafetySnapshot

    incident_id = triaged_production(bot)
    bot.choose_method(incident_id, "pitr", "alice")
    bot.request_approval(incident_id, "alice")
    bot.approve(incident_id, "bob")
    incident = bot.start(incident_id, "alice")
    safety, restore = incident.steps[0], next(s for s in incident.steps if s.destructive)
    assert safety.seq < restore.seq
    with bot.store.session() as s:  # what crash recovery does when the worker died mid-restore
        copied = {"summary": "copied", **SafetySnapshot("copy-1", "fake copies").as_result()}
        s.execute(
            update(Step).where(Step.id == safety.id).values(status="succeeded", result=copied)
        )
        s.execute(update(Step).where(Step.id == restore.id).values(status="interrupted", attempt=1))

    with pytest.raises(NotAuthorizedError, match="mallory may not retry"):
        bot.decide_step(incident_id, restore.id, "mallory", "retry")
    incident = bot.decide_step(incident_id, restore.id, "alice", "retry")
    assert incident.state == State.AWAITING_APPROVAL
    assert bot.approval_status(incident) == (0, 1)  # bob's approval was for the first run
    assert next(s for s in incident.steps if s.id == restore.id).status == "pending"
    with pytest.raises(RollbotError, match="needs 1 valid approval"):
        bot.start(incident_id, "alice")
    with pytest.raises(ApprovalRefusedError, match="cannot approve"):
        bot.approve(incident_id, "alice")  # never the requester in production
    bot.approve(incident_id, "bob")
    incident = bot.start(incident_id, "carol")
    assert incident.state == State.RUNNING
    # The safety copy stays done; the restore and the verify after it run again.
    assert [s.status for s in incident.steps] == ["succeeded", "queued", "queued"]
    assert any(
        f"fresh approval to re-run step {restore.seq}" in e.message
        for e in events(bot, incident_id)
    )
