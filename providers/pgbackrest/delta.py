"""The in-place alternative to restore-then-switch (``pitr`` with option ``in_place``).

``pgbackrest.safety_backup`` takes a backup of the live cluster now and verifies it (listed
in ``pgbackrest info`` under its label, ``pgbackrest verify`` clean), declaring it as the
incident's safety snapshot. ``pgbackrest.delta_restore`` is destructive and needs that
declaration (the executor's rule; it does not take its own copy): it stops the live cluster,
runs ``pgbackrest restore --delta`` to the target into the live data directory itself,
starts it with its own options and waits for promotion. The downtime runs from the stop
to the promotion; the safety backup is the way back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from bot.errors import ProviderError, RollbotError
from bot.steps import Plan, SafetySnapshot, StepContext, StepResult, register_step
from providers.pgbackrest import cluster_ops as ops
from providers.pgbackrest.backup import TYPES, physical_backup
from providers.pgbackrest.restore_point import choose_target, parse_time
from providers.pgbackrest.restore_step import RECOVERY_TIMEOUT, pg_target, pitr_of, window_of
from providers.pgbackrest.tool import PgBackRest, finish
from providers.pgbackrest.window import backups_of, stamp
from providers.postgres.conn import connect, describe_environment

SAFETY_KIND = "pgbackrest.safety_backup"


@register_step
@dataclass
class SafetyBackupStep:
    """A pgBackRest backup of the live cluster taken now, verified, declared as the safety
    snapshot the in-place restore needs."""

    type: str = "full"
    kind: ClassVar[str] = SAFETY_KIND
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        pitr = pitr_of(ctx)
        return Plan(
            title=f"Take a verified safety backup of the live cluster (pgBackRest {self.type})",
            target=f"{describe_environment(ctx.environment)} (stanza {pitr.stanza})",
            action=(
                f"pgbackrest backup --type={self.type} now; then check its label is listed in "
                "pgbackrest info and pgbackrest verify finds the repository valid"
            ),
            details=("the in-place restore after it is refused without this backup",),
        )

    def run(self, ctx: StepContext) -> StepResult:
        if self.type not in TYPES:
            raise RollbotError(f"backup type {self.type!r} is not one of {', '.join(TYPES)}")
        pitr = pitr_of(ctx)
        tool = PgBackRest.of(pitr)
        started = time.monotonic()
        backup = physical_backup(ctx.environment, self.type)
        if backup.label not in {b.label for b in backups_of(tool.info())}:
            raise ProviderError(f"safety backup {backup.label} is not listed by pgbackrest info")
        tool.run("verify")  # exits non-zero when a backup or archive file is invalid
        where = f"pgBackRest stanza {pitr.stanza} ({pitr.config_path})"
        ctx.audit("provider", f"safety backup {backup.label} taken and verified", {})
        return StepResult(
            True,
            f"safety backup {backup.label} ({backup.type}) taken at {stamp(backup.stopped)} "
            "and verified",
            {
                "label": backup.label,
                "stopped": backup.stopped.isoformat(),
                "durations": {"safety_backup": round(time.monotonic() - started, 2)},
            },
            safety=SafetySnapshot(backup.label, where),
        )


def undo_command(ctx: StepContext, label: str) -> str:
    pitr = pitr_of(ctx)
    return (
        f"pgbackrest --config={pitr.config_path} --stanza={pitr.stanza} restore --delta "
        f"--set={label} --type=immediate --target-action=promote "
        f"--pg1-path={pitr.data_directory} (with the cluster stopped)"
    )


def safety_label(ctx: StepContext) -> str:
    return str((ctx.shared.get(SAFETY_KIND) or {}).get("label") or "<the safety backup's label>")


@register_step
@dataclass
class DeltaRestoreStep:
    """DESTRUCTIVE: the live cluster, stopped and restored in place to the target."""

    restore_to: str | None = None
    target: str | None = None
    why: str = ""
    backup_set: str | None = None
    window: str = ""
    wal: str = ""
    kind: ClassVar[str] = "pgbackrest.delta_restore"
    destructive: ClassVar[bool] = True  # and no safety_snapshot = "own": step 1 is the copy

    def pin(self, ctx: StepContext) -> dict[str, Any]:
        """Refuses (before any command runs) no stanza, a target in the future or outside
        the window, and a live data directory that is not on this host."""
        pitr = pitr_of(ctx)
        if not (pitr.data_directory / "PG_VERSION").exists():
            raise RollbotError(
                f"an in-place restore needs the live cluster's data directory on this host; "
                f"{pitr.data_directory} is not one: restore into a new cluster (without in_place)"
            )
        target, why = choose_target(ctx.settings, ctx.environment, self.restore_to)
        window = window_of(ctx)
        window.check_target(target, datetime.now(UTC))
        backup = window.backup_for(target)
        segments, size = window.wal_after(backup)
        return {
            "restore_to": self.restore_to,
            "target": target.isoformat(),
            "why": why,
            "backup_set": backup.label,
            "window": f"{stamp(window.start)} -> {stamp(window.end)}",  # type: ignore[arg-type]
            "wal": f"from {backup.wal_start}: at most {segments} segment(s), "
            f"{size / 1_000_000:,.0f} MB archived since that backup",
        }

    def plan(self, ctx: StepContext) -> Plan:
        pitr = pitr_of(ctx)
        target = stamp(parse_time(self.target)) if self.target else "(chosen when planned)"
        return Plan(
            title=(
                "IN-PLACE point-in-time restore (pgBackRest --delta): the LIVE cluster is "
                "STOPPED and OVERWRITTEN"
            ),
            target=f"{describe_environment(ctx.environment)} in {pitr.data_directory}",
            action=(
                f"stop the live cluster in {pitr.data_directory} (downtime starts), "
                f"pgbackrest restore --delta --type=time --target-action=promote from backup set "
                f"{self.backup_set} into that same directory, start it with its own options, "
                "wait until WAL replay reaches the target and it promotes (downtime ends)"
            ),
            restore_point=f"{target} ({self.why})",
            data_loss=(
                f"every write after {target}; the safety backup taken in the step before holds "
                "them (and the archived WAL up to the stop)"
            ),
            estimated="downtime: the whole step (delta copy of changed files plus WAL replay)",
            details=(
                f"restorable window: {self.window}",
                f"WAL to replay: {self.wal}",
                "there is no second copy to switch from: the old cluster's files are replaced",
                f"to get back: restore the safety backup by its label: {undo_command(ctx, '<label>')}",
                "refused unless a verified safety backup was taken in this incident",
            ),
        )

    def run(self, ctx: StepContext) -> StepResult:
        pitr = pitr_of(ctx)
        if not (self.target and self.backup_set):
            raise RollbotError("this restore was not planned (no pinned target); plan it again")
        target, live = parse_time(self.target), pitr.data_directory
        if ops.running(pitr, live):  # a retry after an interruption may find it stopped
            window_of(ctx).check_target(target, datetime.now(UTC))
        options, label = ops.server_options(live), safety_label(ctx)  # read before the stop
        ctx.record_intent(live=str(live), options=options, backup_set=self.backup_set, safety=label)
        ctx.audit("provider", f"in-place PITR: stopping {live} (safety backup {label})", {})
        started = time.monotonic()
        ops.stop(pitr, live)
        proc = PgBackRest.of(pitr).spawn(
            "restore", *self._restore_args(live), "--log-level-console=info"
        )
        ctx.record_sent(phase="restoring", pid=proc.pid)

        def on_line(line: str) -> None:
            ctx.report(f"pgbackrest restore --delta: {line[-200:]}")
            ctx.heartbeat()

        try:
            finish(proc, "pgbackrest restore --delta", on_line)
        except ProviderError as exc:
            raise ProviderError(self._half_restored(ctx, str(exc))) from None
        ctx.record_sent(phase="restored")
        return self._serve(ctx, {"restore": round(time.monotonic() - started, 2)})

    def resume(self, ctx: StepContext) -> StepResult:
        """Never restores again: after a finished restore it starts the cluster; while
        pgBackRest was running it waits for it, then says the outcome is unknown."""
        if ctx.external.get("phase") == "restored":
            return self._serve(ctx, {})
        live = pitr_of(ctx).data_directory
        while ops.restore_processes(live):
            ctx.heartbeat()
            time.sleep(0.5)
        return StepResult(False, self._half_restored(ctx, "the worker stopped during the restore"))

    def _restore_args(self, live: Path) -> list[str]:
        assert self.target is not None
        return [
            "--delta",
            "--type=time",
            f"--target={pg_target(parse_time(self.target))}",
            "--target-action=promote",
            f"--set={self.backup_set}",
            f"--pg1-path={live}",
        ]

    def _half_restored(self, ctx: StepContext, what: str, retry: bool = False) -> str:
        """What a person does next, in words: finish the restore, or undo it."""
        pitr, label = pitr_of(ctx), safety_label(ctx)
        live, options = pitr.data_directory, (ctx.external.get("intent") or {}).get("options")
        redo = (
            f"pgbackrest --config={pitr.config_path} --stanza={pitr.stanza} "
            f"{' '.join(self._restore_args(live))} restore, then pg_ctl -D {live} "
            f'-o "{options or ""}" start'
        )
        how = "retry this step (`rollbot step INC N retry`, approved again) or by hand: "
        return (
            f"{what}: the live cluster in {live} is stopped and may be half-restored; nothing "
            f"was restored again. Finish it: {how if retry else 'by hand: '}{redo}. Or undo it: "
            f"{undo_command(ctx, label)}"
        )

    def _serve(self, ctx: StepContext, durations: dict[str, float]) -> StepResult:
        pitr, live = pitr_of(ctx), pitr_of(ctx).data_directory
        assert self.target is not None
        started = time.monotonic()
        if not ops.running(pitr, live):
            ops.start_with(pitr, live, str((ctx.external.get("intent") or {})["options"]))
        url = ctx.environment.database_url()
        ops.wait_promoted(url, RECOVERY_TIMEOUT, ctx.heartbeat)
        durations["wal_replay"] = round(time.monotonic() - started, 2)
        with connect(url, autocommit=True) as conn:
            replayed = conn.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()[0]  # type: ignore[index]
        target = parse_time(self.target)
        if replayed is not None and replayed > target:
            raise ProviderError(f"recovery replayed past the target ({replayed} > {target})")
        ctx.audit("provider", f"in-place PITR done: {live} serves again at the target", durations)
        last = stamp(replayed) if replayed else "none after the backup"
        return StepResult(
            True,
            f"restored {live} in place from {self.backup_set} to {stamp(target)}; last replayed "
            f"commit {last}; the safety backup {safety_label(ctx)} holds the state before",
            {
                "target": self.target,
                "backup_set": self.backup_set,
                "last_replayed": replayed.isoformat() if replayed else None,
                "durations": durations,
            },
        )

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        """Ends a pgBackRest still restoring (when nothing else runs) and says plainly what
        state the live cluster may be in; nothing is restored again by itself."""
        intent = ctx.external.get("intent")
        if not intent:
            return ["nothing was changed: the live cluster was not stopped"]
        pids = ops.restore_processes(pitr_of(ctx).data_directory)
        if pids and not remove:
            still = f"pgBackRest (pids {pids}) may still be restoring"
            return [self._half_restored(ctx, still, True)]
        ops.end_processes(pids)
        ended = f"ended pgBackRest restore process(es) {pids}; " if pids else ""
        return [ended + self._half_restored(ctx, "the in-place restore was interrupted", True)]
