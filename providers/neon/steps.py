"""Neon step kinds: branch rollback (set another branch as default) and verify of the branch
the database now lives on. Each change records its operation ids before waiting on them, so
a restart resumes the wait instead of sending the change again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from bot.steps import (
    DatabaseTarget,
    Plan,
    RestoreSource,
    SafetySnapshot,
    StepContext,
    StepResult,
    register_step,
)
from providers.deploy.steps import Repoint
from providers.neon.access import (
    client_for,
    environment_branch,
    label,
    neon_config,
    wait_for,
)
from providers.neon.candidates import choose, is_pre_migration, rollback_candidates
from providers.neon.client import Branch, NeonClient
from providers.postgres.steps import verify_words


def _when(branch: Branch) -> str:
    moment = branch.parent_timestamp or branch.created_at
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@register_step
@dataclass
class BranchRollbackStep:
    """The runbook's Neon branch rollback: the branch from before the migration becomes the
    project's default. The current default is kept as it is (the safety copy)."""

    snapshot: str | None = None  # the branch people picked (name or id); None = best candidate
    branch_id: str | None = None  # pinned: the branch that becomes the default
    branch_name: str | None = None
    current_id: str | None = None  # pinned: the environment's branch now
    current_name: str | None = None
    # False only in a drill on a throwaway branch: the project's default belongs to the real
    # environment, so the drill's environment moves to the branch without set_as_default.
    make_default: bool = True
    kind: ClassVar[str] = "neon.branch_rollback"
    destructive: ClassVar[bool] = True
    safety_snapshot: ClassVar[str] = "own"  # the old default stays, unchanged

    def _resolve(self, client: NeonClient, ctx: StepContext) -> tuple[Branch, Branch, list]:
        current = environment_branch(client, ctx.environment)
        candidates = rollback_candidates(client.list_branches(), current)
        return current, choose(candidates, self.snapshot, current), candidates

    def pin(self, ctx: StepContext) -> dict[str, Any]:
        with client_for(ctx.environment) as client:
            current, chosen, _ = self._resolve(client, ctx)
        return {
            "snapshot": chosen.name,
            "branch_id": chosen.id,
            "branch_name": chosen.name,
            "current_id": current.id,
            "current_name": current.name,
            "make_default": self.make_default,
        }

    def sources(self, ctx: StepContext) -> list[RestoreSource]:
        with client_for(ctx.environment) as client:
            current = environment_branch(client, ctx.environment)
            candidates = rollback_candidates(client.list_branches(), current)
        return [
            RestoreSource(
                b.name,
                f"{b.name}: from {_when(b)}"
                + (", rollbot's pre-migration branch" if is_pre_migration(b, current) else ""),
                chosen=b.id == self.branch_id,
            )
            for b in candidates[:20]
        ]

    def plan(self, ctx: StepContext) -> Plan:
        if not self.make_default:
            return Plan(
                title="Neon branch rollback (drill): move to the branch from before the migration",
                target=f"drill branch {self.current_name} ({self.current_id})",
                action=f"point the drill environment at {self.branch_name} ({self.branch_id}); "
                "the project's default branch is left alone",
                data_loss=f"writes to {self.current_name} after {self.branch_name} was taken",
            )
        return Plan(
            title="Neon branch rollback: make the branch from before the migration the default",
            target=f"Neon project {neon_config(ctx.environment).project_id}, default branch "
            f"{self.current_name} ({self.current_id})",
            action=f"set {self.branch_name} ({self.branch_id}) as the default branch "
            "(POST set_as_default)",
            data_loss=f"writes to {self.current_name} made after {self.branch_name} was taken "
            f"are not in {self.branch_name}; they stay readable in {self.current_name}, "
            "which is kept unchanged",
            estimated="seconds",
            details=(
                f"{self.current_name} keeps all its data and stays available for debugging",
                f"connections to {self.current_name}'s compute drop when the app is pointed "
                f"at {self.branch_name}; the next step does that",
            ),
        )

    def run(self, ctx: StepContext) -> StepResult:
        with client_for(ctx.environment) as client:
            if not self.make_default:
                return self._finish(client, ctx)
            ctx.record_intent(set_as_default=self.branch_id, branch_name=self.branch_name)
            _, operations = client.set_as_default(str(self.branch_id))
            ctx.record_sent(operations=[op.id for op in operations])
            return self._finish(client, ctx)

    def resume(self, ctx: StepContext) -> StepResult:
        with client_for(ctx.environment) as client:
            return self._finish(client, ctx)

    def _finish(self, client: NeonClient, ctx: StepContext) -> StepResult:
        wait_for(client, ctx.external.get("operations", []), ctx.environment, ctx.report)
        chosen = client.get_branch(str(self.branch_id))
        kept = client.get_branch(str(self.current_id))  # the safety copy must still be there
        if self.make_default and not chosen.default:
            return StepResult(False, f"{chosen.name} is not the default branch after the switch")
        head = branch_head(client, ctx, chosen)
        return StepResult(
            True,
            (
                f"{chosen.name} is the default branch"
                if self.make_default
                else f"the environment now lives on {chosen.name}"
            )
            + f"; {kept.name} is kept unchanged",
            {"default_branch": chosen.id, "kept_branch": kept.id, "migrations_head": head},
            safety=SafetySnapshot(kept.name, label(kept)),
            target=DatabaseTarget(label(chosen), {"branch_id": chosen.id}),
        )

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        return [
            f"rollbot may have asked Neon to make {self.branch_name} ({self.branch_id}) the "
            "default branch: check the project's default branch in the Neon console before "
            "retrying"
        ]


def branch_head(client: NeonClient, ctx: StepContext, branch: Branch) -> dict[str, Any] | None:
    """The newest migrations-table row on ``branch``: the head the verify must then find."""
    from providers.postgres.conn import connect
    from providers.postgres.snapshot import migrations_head

    cfg = neon_config(ctx.environment)
    url = client.connection_uri(branch.id, database_name=cfg.database_name, role_name=cfg.role_name)
    with connect(url) as conn:
        return migrations_head(conn, ctx.environment.migrations_table)


@register_step
@dataclass
class NeonVerifyStep:
    """The runbook's verify, connected to the branch the database now lives on."""

    expected_head: str | None = None
    kind: ClassVar[str] = "neon.verify"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        env = ctx.environment
        return Plan(
            title="Verify the database on the branch it now lives on",
            target=f"Neon project {neon_config(env).project_id}",
            action=f"connect to the branch (connection_uri), {verify_words(env)}",
        )

    def run(self, ctx: StepContext) -> StepResult:
        from providers.postgres.steps import verify_at

        env, target = ctx.environment, ctx.declared_target()
        cfg = neon_config(env)
        with client_for(env) as client:
            branch_id = target.ref.get("branch_id") if target else None
            branch = client.get_branch(branch_id) if branch_id else environment_branch(client, env)
            url = client.connection_uri(
                branch.id, database_name=cfg.database_name, role_name=cfg.role_name
            )
        result = verify_at(ctx, url, self.expected_head)
        data = {**result.data, "checked": label(branch), "branch_id": branch.id}
        return StepResult(result.ok, result.summary, data)


@register_step
@dataclass
class RepointStep(Repoint):
    """Steps planned as ``neon.repoint`` before the repoint became provider-neutral
    (``deploy.repoint``) still run, as it does."""

    kind: ClassVar[str] = "neon.repoint"
