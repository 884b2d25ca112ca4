"""Neon point-in-time restore: the environment's branch goes back to a moment of its own
history, its current state kept as a branch of its own (``preserve_under_name``, always).

The restore point is checked before any change is sent: inside the project's history
window (read from the project), not in the future, not before the branch existed. The plan
shows the schema difference between now and then (``compare_schema``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from bot.errors import RollbotError
from bot.steps import (
    DatabaseTarget,
    Plan,
    SafetySnapshot,
    StepContext,
    StepResult,
    register_step,
)
from providers.neon.access import (
    RESTORED_PREFIX,
    client_for,
    environment_branch,
    label,
    neon_config,
    stamp,
    wait_for,
)
from providers.neon.candidates import rollback_candidates
from providers.neon.client import Branch, NeonClient
from providers.neon.steps import branch_head

DIFF_LINES_ON_CARD = 12


def _parse(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RollbotError(f"restore time {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise RollbotError(f"restore time {value!r} has no time zone (add Z or +00:00)")
    return moment.astimezone(UTC)


def check_restore_point(moment: datetime, branch: Branch, client: NeonClient) -> None:
    """Refuse a restore point Neon cannot restore (before anything is sent)."""
    now = datetime.now(UTC)
    if moment > now:
        raise RollbotError(f"restore time {moment:%Y-%m-%d %H:%M:%S} UTC is in the future")
    window = client.history_retention()
    if moment < now - window:
        hours = window.total_seconds() / 3600
        raise RollbotError(
            f"restore time {moment:%Y-%m-%d %H:%M:%S} UTC is outside the project's history "
            f"window ({hours:g} h: nothing older than {now - window:%Y-%m-%d %H:%M:%S} UTC)"
        )
    if moment < branch.created_at:
        raise RollbotError(
            f"restore time {moment:%Y-%m-%d %H:%M:%S} UTC is before branch {branch.name} "
            f"existed ({branch.created_at:%Y-%m-%d %H:%M:%S} UTC)"
        )


def default_restore_point(client: NeonClient, branch: Branch) -> datetime:
    """Just before the migration: when rollbot's newest pre-migration branch was taken."""
    for candidate in rollback_candidates(client.list_branches(), branch):
        if candidate.name.startswith("pre-migrate-"):
            return candidate.parent_timestamp or candidate.created_at
    raise RollbotError(
        "choose a restore time (`rollbot plan INC pitr --restore-to 2026-12-02T10:30:00Z`, or "
        "the card's date picker): no pre-migration branch says when the migration started"
    )


@register_step
@dataclass
class NeonPitrStep:
    snapshot: str | None = None  # unused on Neon; a restore's choice is its time
    before: str | None = None  # the restore time (ISO); None = when the newest
    # pre-migration branch was taken (named like the PostgreSQL restore's option)
    branch_id: str | None = None  # pinned: the environment's branch
    branch_name: str | None = None
    preserve_as: str | None = None  # pinned: where the current state is kept
    # The runbook's other form: a new branch restored-YYYYMMDD-HHMMSS from the branch at
    # that time, the branch itself left as it is; the app is then pointed at the new one.
    into_new: bool = False
    new_name: str | None = None  # pinned, with into_new
    kind: ClassVar[str] = "neon.pitr"
    destructive: ClassVar[bool] = True
    safety_snapshot: ClassVar[str] = "own"  # the preserved branch is the safety copy

    def pin(self, ctx: StepContext) -> dict[str, Any]:
        with client_for(ctx.environment) as client:
            branch = environment_branch(client, ctx.environment)
            moment = _parse(self.before) if self.before else default_restore_point(client, branch)
            check_restore_point(moment, branch, client)
        now = stamp(datetime.now(UTC))
        return {
            "snapshot": None,
            "before": moment.isoformat(),
            "branch_id": branch.id,
            "branch_name": branch.name,
            "preserve_as": None if self.into_new else f"{branch.name}-before-restore-{now}",
            "into_new": self.into_new,
            "new_name": f"{RESTORED_PREFIX}{now}" if self.into_new else None,
        }

    def _moment(self) -> datetime:
        return _parse(str(self.before))

    def plan(self, ctx: StepContext) -> Plan:
        cfg = neon_config(ctx.environment)
        with client_for(ctx.environment) as client:
            diff = client.compare_schema(
                str(self.branch_id),
                db_name=cfg.database_name,
                base_branch_id=str(self.branch_id),
                base_timestamp=self._moment(),
            )
        changed = [
            line
            for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        summary = (
            [f"schema now vs then: {len(changed)} changed line(s)", *changed[:DIFF_LINES_ON_CARD]]
            if changed
            else ["schema now vs then: no difference"]
        )
        at = f"{self._moment():%Y-%m-%d %H:%M:%S} UTC"
        return Plan(
            title="Neon point-in-time restore of the branch",
            target=f"Neon branch {self.branch_name} ({self.branch_id}), project {cfg.project_id}",
            action=f"restore {self.branch_name} to {at} (POST restore, source = itself); its "
            f"current state is kept as branch {self.preserve_as}",
            restore_point=at,
            data_loss=f"writes to {self.branch_name} after {at} will not be in the restored "
            f"branch; they stay readable in {self.preserve_as}",
            estimated="seconds to minutes",
            details=tuple(summary),
            files=(("schema-diff.txt", diff),) if diff else (),
        )

    def run(self, ctx: StepContext) -> StepResult:
        with client_for(ctx.environment) as client:
            branch = client.get_branch(str(self.branch_id))
            check_restore_point(self._moment(), branch, client)  # time has passed since the plan
            if self.into_new:
                return self._run_into_new(client, ctx)
            ctx.record_intent(restore=self.branch_id, preserve_under_name=self.preserve_as)
            _, operations = client.restore_branch(
                str(self.branch_id),
                str(self.branch_id),
                source_timestamp=self._moment(),
                preserve_under_name=str(self.preserve_as),
            )
            ctx.record_sent(operations=[op.id for op in operations])
            return self._finish(client, ctx)

    def resume(self, ctx: StepContext) -> StepResult:
        with client_for(ctx.environment) as client:
            if self.into_new:
                return self._finish_into_new(client, ctx)
            return self._finish(client, ctx)

    def _run_into_new(self, client: NeonClient, ctx: StepContext) -> StepResult:
        ctx.record_intent(create_branch=self.new_name, parent=self.branch_id)
        created, operations = client.create_branch(
            str(self.branch_id), str(self.new_name), parent_timestamp=self._moment()
        )
        ctx.record_sent(operations=[op.id for op in operations], created=created.id)
        return self._finish_into_new(client, ctx)

    def _finish_into_new(self, client: NeonClient, ctx: StepContext) -> StepResult:
        wait_for(client, ctx.external.get("operations", []), ctx.environment, ctx.report)
        created = client.get_branch(str(ctx.external["created"]))
        original = client.get_branch(str(self.branch_id))  # left as it was: the safety copy
        return StepResult(
            True,
            f"{created.name} holds {original.name} as it was at "
            f"{self._moment():%Y-%m-%d %H:%M:%S} UTC; {original.name} is unchanged",
            {
                "created_branch": created.id,
                "restore_to": self.before,
                "migrations_head": branch_head(client, ctx, created),
            },
            safety=SafetySnapshot(original.name, label(original)),
            target=DatabaseTarget(label(created), {"branch_id": created.id}),
        )

    def _finish(self, client: NeonClient, ctx: StepContext) -> StepResult:
        wait_for(client, ctx.external.get("operations", []), ctx.environment, ctx.report)
        preserved = client.find_branch(str(self.preserve_as))  # the safety copy, checked
        restored = client.get_branch(str(self.branch_id))
        head = branch_head(client, ctx, restored)
        return StepResult(
            True,
            f"{restored.name} restored to {self._moment():%Y-%m-%d %H:%M:%S} UTC; the state "
            f"before is kept as {preserved.name} ({preserved.id})",
            {"preserved_branch": preserved.id, "restore_to": self.before, "migrations_head": head},
            safety=SafetySnapshot(preserved.name, label(preserved)),
            target=DatabaseTarget(label(restored), {"branch_id": restored.id}),
        )

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        if self.into_new:
            return [
                f"rollbot may have asked Neon to create branch {self.new_name}: if it exists, "
                "the restored copy is there; delete it or use it before retrying"
            ]
        return [
            f"rollbot may have asked Neon to restore {self.branch_name}: if a branch named "
            f"{self.preserve_as} exists in the project, the restore was sent (its state "
            "before is there); check before retrying"
        ]
