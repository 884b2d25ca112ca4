"""The core's rules with a provider it has never heard of: declared safety snapshots,
declared database targets, and external operations that survive a crash."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.executor import Executor
from bot.models import AuditEvent
from bot.service import Rollbot
from tests import fake_provider
from tests.fake_provider import Crash, reset_platform


def approved_restore(bot: Rollbot, expect: str | None = "0001_good") -> int:
    """A production data-corruption incident on the fake platform, approved and started."""
    incident = bot.open_incident("alice", "bad migration", environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    bot.choose_method(incident.id, "pitr", "alice", options={"expect": expect})
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    return incident.id


def steps_of(bot: Rollbot, incident_id: int) -> list:
    return sorted(bot.get(incident_id).steps, key=lambda s: s.seq)


def audit_kinds(bot: Rollbot, incident_id: int) -> list[str]:
    with bot.store.read() as session:
        return list(
            session.scalars(
                select(AuditEvent.kind).where(AuditEvent.incident_id == incident_id)
            ).all()
        )


def test_verify_checks_where_the_database_was_declared_to_live(bot: Rollbot) -> None:
    platform = reset_platform()
    incident_id = approved_restore(bot)
    done = Executor(bot).run_incident(incident_id)
    assert done.state == "verifying", [s.error for s in done.steps]
    snapshot, switch, verify = steps_of(bot, incident_id)
    assert snapshot.result["safety"]["verified"] is True
    assert switch.result["database_target"]["ref"] == {"database": f"restored-{incident_id}"}
    # The verify read the restored database, not the environment's configured one.
    assert verify.result["checked"] == f"restored-{incident_id}"
    assert verify.result["head"] == "0001_good"
    assert platform.databases["main"] == "0002_bad"


def test_a_step_killed_while_polling_resumes_without_sending_again(bot: Rollbot) -> None:
    platform = reset_platform(polls_per_operation=3, crash_on_poll=2)
    incident_id = approved_restore(bot)
    with pytest.raises(Crash):
        Executor(bot).run_incident(incident_id)
    switch = steps_of(bot, incident_id)[1]
    assert switch.status == "running" and switch.external["sent"] is True

    restarted = Executor(bot)
    assert restarted.recover() == []  # not interrupted: its operation is polled again
    assert steps_of(bot, incident_id)[1].status == "queued"
    done = restarted.run_incident(incident_id)

    assert done.state == "verifying"
    assert [m[0] for m in platform.mutations] == ["switch"]  # sent exactly once
    assert steps_of(bot, incident_id)[2].result["checked"] == f"restored-{incident_id}"
    assert "resumed" in audit_kinds(bot, incident_id)


def test_a_step_killed_before_recording_the_operation_is_interrupted(bot: Rollbot) -> None:
    """Between sending and recording rollbot cannot know what happened: a person decides,
    told what the step would have created."""
    platform = reset_platform(crash_after_send=True)
    incident_id = approved_restore(bot)
    with pytest.raises(Crash):
        Executor(bot).run_incident(incident_id)

    restarted = Executor(bot)
    assert len(restarted.recover()) == 1
    switch = steps_of(bot, incident_id)[1]
    assert switch.status == "interrupted"
    assert switch.result["leftovers"] == [f"look for fake database restored-{incident_id}"]
    assert restarted.run_incident(incident_id).state == "running"  # nothing re-sent
    assert len(platform.mutations) == 1


def test_a_retried_step_starts_over_with_nothing_recorded(bot: Rollbot) -> None:
    reset_platform(crash_after_send=True)
    incident_id = approved_restore(bot)
    with pytest.raises(Crash):
        Executor(bot).run_incident(incident_id)
    Executor(bot).recover()
    fake_provider.PLATFORM.crash_after_send = False
    switch = steps_of(bot, incident_id)[1]
    bot.decide_step(incident_id, switch.id, "alice", "retry")
    assert steps_of(bot, incident_id)[1].external is None


def test_without_a_declared_safety_copy_the_switch_is_refused(bot: Rollbot) -> None:
    platform = reset_platform()
    incident = bot.open_incident("alice", "bad migration", environment="staging")
    bot.choose_method(incident.id, "neon_branch", "alice")
    with bot.store.session() as session:
        first = sorted(bot._load(session, incident.id).steps, key=lambda s: s.seq)[0]
        first.kind, first.params = "fake.verify", {}
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    failed = Executor(bot).run_incident(incident.id)
    assert failed.state == "failed"
    assert "no verified safety snapshot" in (steps_of(bot, incident.id)[1].error or "")
    assert platform.mutations == []
