"""``pgbackrest.restore``: WAL-replay restore to a point in time, into a new cluster.

The live cluster is never touched here: pgBackRest restores the pinned backup set into a
new data directory, which starts on its own port, replays WAL to the target and promotes.
Pinned when the plan is made (``pin``): the target, the backup set, the directory, the port,
and what the plan says about the window, so the approved plan is the one that runs.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from bot.config import PitrConfig
from bot.errors import ProviderError, RollbotError
from bot.steps import Plan, StepContext, StepResult, register_step
from providers.pgbackrest import cluster_ops as ops
from providers.pgbackrest.restore_point import choose_target, parse_time
from providers.pgbackrest.tool import PgBackRest, finish
from providers.pgbackrest.window import read_window, stamp
from providers.postgres.conn import connect, describe_environment

RECOVERY_TIMEOUT = 3600.0


def pitr_of(ctx: StepContext) -> PitrConfig:
    pitr = ctx.environment.pitr
    if pitr is None:
        raise RollbotError(f"environment {ctx.environment.name!r} has no [pitr] section")
    return pitr


def window_of(ctx: StepContext) -> Any:
    pitr = pitr_of(ctx)
    info = PgBackRest.of(pitr).info()
    return read_window(info, ctx.environment.database_url(), pitr.archive_lag_seconds)


def check_free(pitr: PitrConfig, datadir: Path, port: int) -> None:
    """A restore never goes into an existing directory or onto a port in use."""
    if datadir.exists():
        raise RollbotError(f"{datadir} already exists: remove it, or set another restore_directory")
    if ops.port_in_use(pitr.restore_host, port):
        raise RollbotError(
            f"port {port} on {pitr.restore_host} is in use: set another restore_port"
        )


def pg_target(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


@register_step
@dataclass
class PitrRestoreStep:
    restore_to: str | None = None
    target: str | None = None
    why: str = ""
    backup_set: str | None = None
    data_directory: str | None = None
    port: int | None = None
    window: str = ""
    wal: str = ""
    kind: ClassVar[str] = "pgbackrest.restore"
    destructive: ClassVar[bool] = False  # the live cluster is not touched

    def pin(self, ctx: StepContext) -> dict[str, Any]:
        """Refuses (before any command runs) a target in the future or outside the window."""
        pitr = pitr_of(ctx)
        target, why = choose_target(ctx.settings, ctx.environment, self.restore_to)
        window = window_of(ctx)
        window.check_target(target, datetime.now(UTC))
        backup = window.backup_for(target)
        segments, size = window.wal_after(backup)
        now = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        datadir = pitr.restore_directory or pitr.data_directory.with_name(
            f"{pitr.data_directory.name}.restore_{now}"
        )
        port = pitr.restore_port or ops.free_port(pitr.restore_host)
        check_free(pitr, datadir, port)
        return {
            "restore_to": self.restore_to,
            "target": target.isoformat(),
            "why": why,
            "backup_set": backup.label,
            "data_directory": str(datadir),
            "port": port,
            "window": f"{stamp(window.start)} -> {stamp(window.end)}",  # type: ignore[arg-type]
            "wal": f"from {backup.wal_start}: at most {segments} segment(s), "
            f"{size / 1_000_000:,.0f} MB archived since that backup",
        }

    def plan(self, ctx: StepContext) -> Plan:
        pitr = pitr_of(ctx)
        target = stamp(parse_time(self.target)) if self.target else "(chosen when planned)"
        return Plan(
            title="Point-in-time restore with pgBackRest into a new cluster",
            target=f"{describe_environment(ctx.environment)} (stanza {pitr.stanza})",
            action=(
                f"pgbackrest restore --type=time --target-action=promote from backup set "
                f"{self.backup_set} into {self.data_directory}, started on "
                f"{pitr.restore_host}:{self.port}; WAL replayed to the target, then promoted"
            ),
            restore_point=f"{target} ({self.why})",
            data_loss=f"every write after {target} (the live cluster keeps them until the switch)",
            details=(
                f"restorable window: {self.window}",
                f"WAL to replay: {self.wal}",
                "the live cluster is not changed by this step; the switch is a later step",
            ),
        )

    def _datadir(self) -> Path:
        assert self.data_directory is not None
        return Path(self.data_directory)

    def run(self, ctx: StepContext) -> StepResult:
        pitr = pitr_of(ctx)
        if not (self.target and self.backup_set and self.port):
            raise RollbotError("this restore was not planned (no pinned target); plan it again")
        target, datadir = parse_time(self.target), self._datadir()
        window_of(ctx).check_target(target, datetime.now(UTC))
        check_free(pitr, datadir, self.port)
        ctx.record_intent(data_directory=str(datadir), port=self.port, backup_set=self.backup_set)
        ctx.audit("provider", f"PITR restore started: {self.backup_set} to {stamp(target)}", {})
        started = time.monotonic()
        proc = PgBackRest.of(pitr).spawn(
            "restore",
            "--type=time",
            f"--target={pg_target(target)}",
            "--target-action=promote",
            f"--set={self.backup_set}",
            f"--pg1-path={datadir}",
            "--log-level-console=info",
        )

        def on_line(line: str) -> None:
            ctx.report(f"pgbackrest restore: {line[-200:]}")
            ctx.heartbeat()

        try:
            finish(proc, "pgbackrest restore", on_line)
        except ProviderError as exc:
            shutil.rmtree(datadir, ignore_errors=True)
            raise ProviderError(
                f"{exc}; the live cluster was not touched and the partial restore {datadir} "
                "was removed: pick another method or time"
            ) from None
        ctx.record_sent(data_directory=str(datadir), port=self.port, restored=True)
        return self._recover(ctx, {"restore": round(time.monotonic() - started, 2)})

    def resume(self, ctx: StepContext) -> StepResult:
        """pgBackRest finished before the worker died: start (or wait for) the recovery."""
        return self._recover(ctx, {})

    def _recover(self, ctx: StepContext, durations: dict[str, float]) -> StepResult:
        from providers.postgres.snapshot import migrations_head

        pitr, datadir = pitr_of(ctx), self._datadir()
        assert self.port is not None and self.target is not None
        started = time.monotonic()
        if not ops.running(pitr, datadir):
            ops.start_candidate(pitr, datadir, self.port)
        url = ops.url_at(ctx.environment.database_url(), pitr.restore_host, self.port)
        ops.wait_promoted(url, RECOVERY_TIMEOUT, ctx.heartbeat)
        durations["wal_replay"] = round(time.monotonic() - started, 2)
        with connect(url, autocommit=True) as conn:
            replayed = conn.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()[0]  # type: ignore[index]
            head = migrations_head(conn, ctx.environment.migrations_table)
        target = parse_time(self.target)
        if replayed is not None and replayed > target:
            raise ProviderError(f"recovery replayed past the target ({replayed} > {target})")
        where = f"{pitr.restore_host}:{self.port} ({datadir})"
        ctx.audit("provider", f"PITR restore recovered and promoted: {where}", durations)
        last = stamp(replayed) if replayed else "none after the backup"
        return StepResult(
            True,
            f"restored {self.backup_set} to {stamp(target)} into {where}; last replayed "
            f"commit {last}",
            {
                "candidate": {"data_directory": str(datadir), "port": self.port},
                "target": self.target,
                "backup_set": self.backup_set,
                "last_replayed": replayed.isoformat() if replayed else None,
                "migrations_head": head,
                "durations": durations,
            },
        )

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        """End a pgBackRest still restoring, stop the candidate, remove (or list) its directory;
        the live cluster was never touched."""
        intent = ctx.external.get("intent") or {}
        where = intent.get("data_directory") or self.data_directory
        if not where:
            return ["nothing was left behind (the restore had not started)"]
        datadir = Path(where)
        pids = ops.restore_processes(datadir)
        if not remove:
            return [
                f"left {datadir} (pgBackRest pids {pids or 'none'}): another step in "
                f"{ctx.environment.name} is running; remove it once that is done"
            ]
        ops.end_processes(pids)
        lines = [f"ended pgBackRest restore process(es) {pids}"] if pids else []
        if datadir.exists():
            ops.stop(pitr_of(ctx), datadir, "immediate")
            shutil.rmtree(datadir, ignore_errors=True)
            ops.log_path(datadir).unlink(missing_ok=True)
            lines.append(f"removed the partial restore {datadir}; the live cluster is untouched")
        return lines or ["nothing was left behind"]
