"""The executor's safety rule reads the declared safety snapshot, whatever the provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bot.executor import Executor
from bot.models import Step
from bot.service import Rollbot
from bot.steps import Plan, SafetySnapshot, StepContext, StepResult, register_step


@register_step
@dataclass
class CopyForTests:
    """Says it copied the state; declares it as a safety snapshot only if ``declare``."""

    declare: bool = True
    kind: ClassVar[str] = "test.copy"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        return Plan("Copy the state", "memory", "copy")

    def run(self, ctx: StepContext) -> StepResult:
        safety = SafetySnapshot("copy-1", "memory") if self.declare else None
        return StepResult(True, "copied", {"snapshot": "copy-1", "verified": True}, safety=safety)


@register_step
@dataclass
class WipeForTests:
    kind: ClassVar[str] = "test.wipe"
    destructive: ClassVar[bool] = True

    def plan(self, ctx: StepContext) -> Plan:
        return Plan("Wipe the state", "memory", "wipe", data_loss="everything")

    def run(self, ctx: StepContext) -> StepResult:
        return StepResult(True, "wiped")


def _approved_with(bot: Rollbot, copy_declares: bool) -> int:
    """An approved incident whose plan is: copy (declared or not), then wipe."""
    incident = bot.open_incident("alice", "safety rule", environment="production")
    bot.answer(incident.id, "app_broken", "alice")
    bot.choose_method(incident.id, "app_rollback", "alice")
    with bot.store.session() as session:
        rows = session.query(Step).filter_by(incident_id=incident.id).order_by(Step.seq).all()
        rows[0].kind, rows[0].params = "test.copy", {"declare": copy_declares}
        rows[1].kind, rows[1].params, rows[1].destructive = "test.wipe", {}, True
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    return incident.id


def test_a_destructive_step_needs_a_declared_safety_snapshot(bot: Rollbot) -> None:
    refused = Executor(bot).run_incident(_approved_with(bot, copy_declares=False))
    assert refused.state == "failed"
    assert "no verified safety snapshot was taken first" in (refused.steps[1].error or "")

    done = Executor(bot).run_incident(_approved_with(bot, copy_declares=True))
    assert [s.status for s in done.steps] == ["succeeded", "succeeded"]
    assert done.steps[0].result["safety"] == {"name": "copy-1", "where": "memory", "verified": True}
    assert bot.ticks(done.id)["before.snapshot"].evidence == "verified snapshot copy-1"
