"""``rollbot migrate --env NAME``: the runbook's migrate-with-telemetry wrapper.

Order matters, and nothing runs before the checks pass:

1. the pending migrations (tracking table vs journal) are risk-checked with
   squawk; in production a blocking finding needs ``--override-risk "reason"``,
   which is audited, or the command stops with exit 2;
2. a verified pre-deploy snapshot is taken (so a bad deploy has a restore point);
3. ``Migration started/finished/failed`` lines go to ``audit.log`` (the
   runbook's format; ``settings.audit_log`` or ``<migrations>/audit.log``) and
   the store's audit trail, and a notice to the devops channel when
   ``$SLACK_BOT_TOKEN`` is set;
4. the team's migrate command runs in its workdir (with ``DATABASE_URL`` and
   ``ENVIRONMENT`` set for it), its output streamed, and its exit code is
   passed through; without a configured command the built-in drizzle applier runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.audit import append_audit_line
from bot.config import EnvironmentConfig
from bot.errors import RollbotError
from bot.redact import redact
from bot.shell import TIMEOUT_EXIT, command_environment, run_streaming
from handlers.runtime import Runtime, cli_actor, start_runtime
from providers.drizzle.journal import Journal
from providers.drizzle.steps import migrations_journal, pending_entries
from providers.squawk import RiskReport, check_files


class RiskRefusedError(RollbotError):
    """Production refused a migration with blocking risk findings and no override."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate",
        help="apply pending migrations: risk check, verified snapshot, audit log, devops notice",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--env", required=True, metavar="NAME", help="environment from the config")
    p.add_argument(
        "--override-risk",
        metavar="REASON",
        help="run despite blocking risk findings in production (the reason is audited)",
    )
    p.set_defaults(func=run)


@dataclass
class Telemetry:
    """Audit lines (file + store) and devops notices for one migrate run."""

    runtime: Runtime
    env: EnvironmentConfig
    actor: str
    log_file: Path

    def audit(self, message: str, data: dict[str, Any] | None = None) -> None:
        # The store's trail writes settings.audit_log itself when configured.
        self.runtime.bot.note(None, self.actor, "migration", message, data)
        if self.runtime.settings.audit_log is None:
            append_audit_line(self.log_file, message)

    def notify(self, text: str) -> None:
        from providers.slack_notify import notify_devops

        channel = self.runtime.settings.slack.devops_channel
        notify_devops(channel, f"[{self.env.name} ({self.env.tier})] {text}")


def check_risk(
    report: RiskReport,
    env: EnvironmentConfig,
    override: str | None,
    telemetry: Telemetry,
    name: str,
) -> None:
    """Production + blocking finding: refuse (audited) unless overridden (audited)."""
    blocking = report.blocking
    if not blocking or env.tier != "production":
        return
    rules = sorted({f.rule for f in blocking})
    data = {"findings": [str(f) for f in blocking], "rules": rules}
    if not override or not override.strip():
        telemetry.audit(
            f"Migration refused: {name}: {len(blocking)} blocking risk finding(s) ({', '.join(rules)})",
            data,
        )
        raise RiskRefusedError(
            f"{len(blocking)} blocking risk finding(s) in the pending migrations of {env.name} "
            f"({', '.join(rules)}); nothing was run. Make the change additive, or re-run with "
            '--override-risk "reason" (audited)'
        )
    telemetry.audit(
        f"Risk override by {telemetry.actor} for {name}: {override.strip()} "
        f"(blocking: {', '.join(rules)})",
        {**data, "reason": override.strip()},
    )


def take_predeploy_snapshot(env: EnvironmentConfig, url: str, name: str, tag: str) -> str:
    """The provider's own pre-migration copy (a Neon branch) if it has one, else a dump."""
    from bot.methods import provider_for
    from providers.postgres.snapshot import create_snapshot
    from providers.storage import open_storage

    own = getattr(provider_for(env), "pre_migration_snapshot", None)
    if own is not None:
        return own(env, tag)

    storage = open_storage(env.backups, endpoint_url=env.backups_s3_endpoint_url)
    snap = create_snapshot(
        url,
        storage,
        migrations_table=env.migrations_table,
        label=f"pre-deploy {name}"[:200],
        purpose="pre-deploy",
        verify=True,
    )
    return snap.summary()


def _apply_builtin(env: EnvironmentConfig, url: str, journal: Journal) -> int:
    from providers.drizzle.apply import apply_migrations

    try:
        applied = apply_migrations(url, journal, table=env.migrations_table)
    except RollbotError as exc:
        print(f"rollbot: {redact(exc)}", file=sys.stderr)
        return 1
    print(f"applied: {', '.join(e.tag for e in applied) or 'nothing'}")
    return 0


def run(args: argparse.Namespace) -> int:
    runtime = start_runtime(args.config)
    try:
        return migrate(runtime, args.env, args.override_risk)
    finally:
        runtime.bot.store.dispose()


def migrate(runtime: Runtime, env_name: str, override: str | None = None) -> int:
    env = runtime.settings.environment(env_name)
    journal = migrations_journal(env)
    url = env.database_url()
    telemetry = Telemetry(runtime, env, cli_actor(runtime), journal.folder / "audit.log")
    pending, problems = pending_entries(url, journal, env.migrations_table)
    for problem in problems:
        print(f"warning: {problem}")
    if not pending:
        print(f"{env.name}: no pending migrations in {journal.folder}")
        return 0
    name = ", ".join(e.tag for e in pending)
    print(f"{env.name} ({env.tier}): {len(pending)} pending migration(s): {name}")

    if env.pitr is not None:  # no healthy WAL archive, no point-in-time way back
        from providers.pgbackrest.status import require_healthy_archive

        print("\n".join(require_healthy_archive(env)))
    report = check_files([e.path for e in pending])
    print("\n".join(report.lines()))
    check_risk(report, env, override, telemetry, name)

    try:
        taken = take_predeploy_snapshot(env, url, name, pending[0].tag)
    except RollbotError as exc:
        telemetry.audit(f"Migration not started: {name}: pre-deploy snapshot failed: {exc}")
        raise
    print(f"pre-deploy snapshot: {taken}")
    # In rollbot's audit trail; the folder's runbook-format log keeps migration lines only.
    telemetry.runtime.bot.note(
        None, telemetry.actor, "snapshot", f"Pre-deploy snapshot for {name}: {taken}"
    )

    how = f"`{env.commands.migrate}`" if env.commands.migrate else "the built-in drizzle applier"
    telemetry.audit(f"Migration started: {name}", {"how": how, "tier": env.tier})
    telemetry.notify(f"Migration started: {name} with {how}")
    started = time.monotonic()
    if env.commands.migrate:
        code = run_streaming(
            env.commands.migrate,
            env.commands.workdir,
            env.commands.timeout_seconds,
            command_environment(env),
            print,
        )
    else:
        code = _apply_builtin(env, url, journal)
    seconds = round(time.monotonic() - started, 2)
    if code == 0:
        message = f"Migration finished: {name} ({seconds}s)"
    elif code == TIMEOUT_EXIT and env.commands.migrate:
        message = f"Migration failed: {name} (timed out after {env.commands.timeout_seconds}s)"
    else:
        message = f"Migration failed: {name} (exit {code} after {seconds}s)"
    telemetry.audit(message, {"exit_code": code, "seconds": seconds})
    telemetry.notify(message)
    print(message)
    return code
