"""Step kind ``postgres.undo_restore``: swap the database a restore kept back in.

Its own incident, plan and approvals (``Rollbot.open_undo``): the plan names the kept
database and what the swap replaces; a verified safety snapshot of the current state
is taken first, and the current database is kept in turn, so the undo can be undone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bot.steps import Plan, StepContext, StepResult, register_step
from providers.postgres.conn import dbname, describe_environment
from providers.postgres.kept import KEPT_SUFFIX, kept_database, swap_back
from providers.postgres.snapshot import human_size
from providers.postgres.steps import leftovers_of_interruption, storage_of


@register_step
@dataclass
class UndoRestoreStep:
    kept: str
    kind: ClassVar[str] = "postgres.undo_restore"
    destructive: ClassVar[bool] = True
    safety_snapshot: ClassVar[str] = "own"

    def plan(self, ctx: StepContext) -> Plan:
        env = ctx.environment
        url = env.database_url()
        db = dbname(url)
        kept = kept_database(url, self.kept)
        return Plan(
            title=f"Swap {self.kept} back in as {db}",
            target=describe_environment(env),
            action=f"rename {db} to {db}{KEPT_SUFFIX}<now>, then {self.kept} to {db}",
            restore_point=kept.kept_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            data_loss=(
                f"every change written to {db} since {kept.kept_at:%Y-%m-%d %H:%M} UTC leaves "
                f"the live database (it stays in the renamed one)"
            ),
            details=(
                f"{self.kept}: {human_size(kept.size)}",
                "a verified safety snapshot of the current state is taken first",
            ),
        )

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        return leftovers_of_interruption(ctx, remove, databases=False)

    def run(self, ctx: StepContext) -> StepResult:
        from providers.postgres.snapshot import create_snapshot, verify_snapshot

        env = ctx.environment
        url = env.database_url()
        kept_database(url, self.kept)  # still there: refuse before the snapshot otherwise
        storage = storage_of(env)
        safety = create_snapshot(
            url,
            storage,
            migrations_table=env.migrations_table,
            label=f"safety snapshot before swapping {self.kept} back, INC-{ctx.incident_id}",
            purpose="safety",
            incident=ctx.incident_id,
        )
        verify_snapshot(storage, safety.name)
        ctx.audit("provider", f"Undo started: {self.kept} -> {dbname(url)}", {})
        replaced = swap_back(url, self.kept)
        ctx.audit("provider", f"Undo finished: the replaced state is kept as {replaced}", {})
        return StepResult(
            True,
            f"{self.kept} is {dbname(url)} again (verified safety snapshot {safety.name} taken "
            f"first); the replaced state is kept as {replaced}",
            {"kept_database": replaced, "safety_snapshot": safety.name, "swapped_in": self.kept},
        )
