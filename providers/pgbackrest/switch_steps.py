"""``pgbackrest.verify`` (the restored cluster, before anything changes) and
``pgbackrest.switch`` (its own approved destructive step).

Verify runs the runbook's verify against the candidate and records its deep fingerprint
(``providers/postgres/fingerprint.py``, what ``deep_verify`` compares); the switch refuses
to run without it, and after swapping compares the serving cluster with that fingerprint.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from bot.errors import ProviderError, RollbotError
from bot.steps import DatabaseTarget, Plan, StepContext, StepResult, register_step
from providers.pgbackrest import cluster_ops as ops
from providers.pgbackrest.restore_step import pitr_of
from providers.postgres.conn import connect, describe_environment
from providers.postgres.fingerprint import compare_fingerprints, take_fingerprint

NEW_URL_VAR = "ROLLBOT_NEW_DATABASE_URL"


def candidate(ctx: StepContext) -> tuple[Path, str]:
    """The restored cluster's directory and URL, from the restore step's result."""
    restored = (ctx.shared.get("pgbackrest.restore") or {}).get("candidate")
    if not restored:
        raise RollbotError("no restored cluster in this incident: the restore step must run first")
    pitr = pitr_of(ctx)
    url = ops.url_at(ctx.environment.database_url(), pitr.restore_host, int(restored["port"]))
    return Path(restored["data_directory"]), url


def fingerprint_of(url: str, like: dict[str, Any] | None = None) -> dict[str, Any]:
    with connect(url, autocommit=True) as conn:
        return take_fingerprint(conn, like=like)


@register_step
@dataclass
class PitrVerifyStep:
    kind: ClassVar[str] = "pgbackrest.verify"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        return Plan(
            title="Verify the restored cluster (before the switch)",
            target="the restored cluster (new data directory, its own port)",
            action="migrations head, largest tables, smoke queries; record its deep fingerprint",
        )

    def run(self, ctx: StepContext) -> StepResult:
        from providers.postgres.steps import verify_at

        _datadir, url = candidate(ctx)
        started = time.monotonic()
        result = verify_at(ctx, url)
        print_ = fingerprint_of(url)
        lines, problems = schema_against_snapshot(ctx, print_)
        ctx.report("\n".join(lines))
        tables = len(print_.get("tables") or {})
        seconds = round(time.monotonic() - started, 2)
        ok = result.ok and not problems
        summary = f"restored cluster: {result.summary}; fingerprint of {tables} table(s) recorded"
        return StepResult(
            ok,
            summary if ok else "; ".join([*result.data.get("problems", []), *problems]),
            {
                **result.data,
                "lines": [*result.data.get("lines", []), *lines],
                "fingerprint": print_,
                "durations": {"verify": seconds},
            },
        )


def schema_against_snapshot(
    ctx: StepContext, actual: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """The restored objects (functions, triggers, views, indexes, constraints) against the
    newest pg_dump snapshot from before the target at the same migrations head (rollbot
    migrate's pre-deploy snapshot): rows moved on since it, the schema must not have."""
    from providers.postgres.snapshot import list_snapshots
    from providers.postgres.steps import storage_of

    restored = ctx.shared.get("pgbackrest.restore") or {}
    target, head = datetime.fromisoformat(restored["target"]), restored.get("migrations_head")
    try:
        snaps = list_snapshots(storage_of(ctx.environment))
    except RollbotError:
        snaps = []
    same = [
        s for s in snaps
        if s.created_at <= target and (s.manifest or {}).get("fingerprint")
        and (s.manifest or {}).get("migrations_head") == head
    ]  # fmt: skip
    if not same:
        return ["deep verify: no pg_dump snapshot at the same migrations head to compare with"], []
    snap = same[0]  # newest first
    before = snap.manifest["fingerprint"].get("objects") or {}  # type: ignore[index]
    after = actual.get("objects") or {}
    problems = [
        f"{kind} {name}: {'missing' if name in set(before.get(kind) or []) else 'unexpected'} "
        f"(vs snapshot {snap.name})"
        for kind in sorted(before.keys() | after.keys())
        for name in sorted(set(before.get(kind) or []) ^ set(after.get(kind) or []))
    ]
    counted = ", ".join(f"{k} {len(v)}" for k, v in sorted(before.items()))
    verdict = "DIFFER from" if problems else "equal"
    return [f"deep verify: object names {verdict} snapshot {snap.name} ({counted})"], problems


@register_step
@dataclass
class PitrSwitchStep:
    kind: ClassVar[str] = "pgbackrest.switch"
    destructive: ClassVar[bool] = True
    safety_snapshot: ClassVar[str] = "own"  # the old cluster is kept whole (or not touched)

    def plan(self, ctx: StepContext) -> Plan:
        pitr = pitr_of(ctx)
        if pitr.repoint_command:
            action = (
                f"run the repoint command `{pitr.repoint_command}` with the restored cluster's "
                f"URL in ${NEW_URL_VAR}; the old cluster keeps running, unchanged"
            )
        else:
            action = (
                f"stop the cluster in {pitr.data_directory}, keep that directory as "
                f"{pitr.data_directory.name}.before_restore_<time>, move the restored one in and "
                "start it with the old cluster's options (same port)"
            )
        return Plan(
            title="Switch to the restored cluster",
            target=describe_environment(ctx.environment),
            action=action,
            data_loss="every write after the restore point, including any made until the switch",
            details=("refused unless the restored cluster was verified in this incident",),
        )

    def _verified(self, ctx: StepContext) -> dict[str, Any]:
        verified = ctx.shared.get("pgbackrest.verify") or {}
        if not verified.get("fingerprint"):
            raise RollbotError("the restored cluster was not verified: the switch is refused")
        return verified["fingerprint"]

    def run(self, ctx: StepContext) -> StepResult:
        expected = self._verified(ctx)
        if pitr_of(ctx).repoint_command:
            return self._repoint(ctx, expected)
        pitr, (datadir, _url) = pitr_of(ctx), candidate(ctx)
        live = pitr.data_directory
        stamp_ = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
        kept = live.with_name(f"{live.name}.before_restore_{stamp_}")
        options = ops.server_options(live)
        ctx.record_intent(kept=str(kept), live=str(live), candidate=str(datadir), options=options)
        started = time.monotonic()
        ops.stop(pitr, datadir)
        ops.stop(pitr, live)
        live.rename(kept)
        datadir.rename(live)
        ctx.record_sent(kept=str(kept), live=str(live), options=options)
        return self._serve(ctx, expected, started)

    def resume(self, ctx: StepContext) -> StepResult:
        return self._serve(ctx, self._verified(ctx), time.monotonic())

    def _serve(self, ctx: StepContext, expected: dict[str, Any], started: float) -> StepResult:
        pitr, sent = pitr_of(ctx), ctx.external
        live = Path(sent["live"])
        if not ops.running(pitr, live):
            ops.start_with(pitr, live, sent["options"])
        url = ctx.environment.database_url()
        ops.wait_promoted(url, 120, ctx.heartbeat)
        report = compare_fingerprints(expected, fingerprint_of(url, like=expected))
        seconds = round(time.monotonic() - started, 2)
        ctx.audit("provider", f"PITR switch done; old cluster kept as {sent['kept']}", {})
        summary = (
            f"the restored cluster now serves from {live}; the old one is kept as {sent['kept']}"
        )
        return StepResult(
            report.ok,
            summary if report.ok else "; ".join(report.problems),
            {"kept": sent["kept"], "deep_verify": report.lines(), "durations": {"switch": seconds}},
        )

    def _repoint(self, ctx: StepContext, expected: dict[str, Any]) -> StepResult:
        pitr, (datadir, url) = pitr_of(ctx), candidate(ctx)
        started = time.monotonic()
        ctx.record_intent(repoint=True, candidate=str(datadir))
        env = {**os.environ, NEW_URL_VAR: url}
        proc = subprocess.run(
            ["bash", "-c", pitr.repoint_command or ""],
            env=env,
            cwd=ctx.environment.commands.workdir,
            capture_output=True,
            text=True,
            timeout=ctx.environment.commands.timeout_seconds,
        )
        if proc.returncode != 0:
            raise ProviderError(
                f"the repoint command exited {proc.returncode}; the old cluster still serves"
            )
        ctx.record_sent(repoint=True)
        report = compare_fingerprints(expected, fingerprint_of(url, like=expected))
        label = f"restored cluster on {pitr.restore_host}:{url.rsplit(':', 1)[-1].split('/')[0]}"
        return StepResult(
            report.ok,
            f"repointed to the {label}" if report.ok else "; ".join(report.problems),
            {
                "deep_verify": report.lines(),
                "durations": {"switch": round(time.monotonic() - started, 2)},
            },
            target=DatabaseTarget(label, {"data_directory": str(datadir)}),
        )
