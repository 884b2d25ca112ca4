"""PostgreSQL step kinds for the incident core: snapshot, restore, verify, reset.

Each wraps one provider operation behind the core's Step protocol: ``plan()``
says what will change and what may be lost, ``run()`` does it and reports.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from bot.config import EnvironmentConfig
from bot.errors import RollbotError
from bot.redact import register_secret
from bot.steps import (
    Plan,
    RestoreSource,
    SafetySnapshot,
    StepContext,
    StepResult,
    register_step,
)
from providers.drizzle.journal import Journal, read_journal
from providers.postgres.conn import dbname, describe, describe_environment
from providers.postgres.snapshot import human_size
from providers.storage import BackupStorage, open_storage


def journal_of(env: EnvironmentConfig) -> Journal | None:
    folder = env.migrations_dir
    if folder is None or not (Path(folder) / "meta" / "_journal.json").exists():
        return None
    return read_journal(folder)


def verify_words(env: EnvironmentConfig) -> str:
    """What every platform's verify does once connected (``verify_at``), for its plan."""
    return (
        f"read the newest rows of {env.migrations_table}, compare with the migrations journal, "
        f"count the largest tables, run {len(env.smoke_queries)} smoke quer(ies)"
    )


@register_step
@dataclass
class VerifyStep:
    """The runbook's "Verify": migrations table vs journal, largest tables, smoke queries."""

    expected_head: str | None = None
    kind: ClassVar[str] = "postgres.verify"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        env = ctx.environment
        return Plan(
            title="Verify the database",
            target=describe_environment(env),
            action=verify_words(env),
        )

    def run(self, ctx: StepContext) -> StepResult:
        return verify_at(ctx, verified_url(ctx), self.expected_head)


def verified_url(ctx: StepContext) -> str:
    """The environment's database, or where an earlier step declared it now lives."""
    target = ctx.declared_target()
    if target is None:
        return ctx.environment.database_url()
    if target.url_env:
        url = os.environ.get(target.url_env)
        if not url:
            raise RollbotError(
                f"the database now lives at {target.label}, but ${target.url_env} is not set"
            )
        register_secret(urlsplit(url).password)
        return url
    raise RollbotError(
        f"the database now lives at {target.label}; this verify step cannot reach it "
        "(its provider's verify step must run instead)"
    )


def verify_at(ctx: StepContext, url: str, expected_head: str | None = None) -> StepResult:
    """The runbook's verify against ``url``: migrations head, tables, smoke queries, and,
    after a restore from a snapshot, the snapshot's fingerprint."""
    from providers.postgres.verify import verify_database

    env = ctx.environment
    journal = journal_of(env)
    expected = expected_head or _restored_head(ctx, journal)
    report = verify_database(
        url,
        migrations_table=env.migrations_table,
        journal=journal,
        smoke_queries=env.smoke_queries,
        expected_head=expected,
    )
    lines, problems = report.lines(), list(report.problems)
    deep = _deep_verify(ctx, url)
    if deep is not None:
        lines += deep.lines()
        problems += [f"deep verify: {p}" for p in deep.problems]
    target = ctx.declared_target()
    if target is not None:
        lines.insert(0, f"checked {target.label} (where the database now lives)")
    ctx.report("\n".join(lines))
    head = report.head
    ok = not problems
    summary = "database verified" + (" against the snapshot" if deep else "")
    return StepResult(
        ok,
        summary if ok else "; ".join(problems),
        {
            "lines": lines,
            "head": head.tag if head else None,
            "problems": problems,
            "smoke_queries": len(env.smoke_queries) if ok else 0,
            "checked": target.label if target else None,
        },
    )


def _deep_verify(ctx: StepContext, url: str) -> Any:
    """After a restore in this incident: the restored database against the snapshot."""
    from providers.postgres.deep_verify import deep_verify

    restored = ctx.shared.get("postgres.restore") or {}
    if not restored.get("snapshot"):
        return None
    return deep_verify(url, storage_of(ctx.environment), restored["snapshot"])


def _restored_head(ctx: StepContext, journal: Journal | None) -> str | None:
    """After a restore (or a branch switch) the database is expected at the migrations head
    that step declared (``migrations_head`` in its result), not at the journal's newest
    entry: name that entry so verify checks the right head."""
    declared = [r["migrations_head"] for r in ctx.results if r.get("migrations_head")]
    head = declared[-1] if declared else {}  # the newest step that moved the database says
    if journal is None or not head.get("hash"):
        return None
    for entry in journal.entries:
        if entry.hash == head["hash"]:
            return entry.tag
    return None


def _migrate_callable(env: EnvironmentConfig, ctx: StepContext) -> Any:
    """The team's migrate command if configured, else the built-in drizzle applier."""
    if env.commands.migrate:
        from bot.steps import CommandStep

        def run_command(_url: str) -> None:
            result = CommandStep("migrate").run(ctx)
            if not result.ok:
                raise RollbotError(f"migrations failed: {result.summary}")

        return run_command
    journal = journal_of(env)
    if journal is None:
        return lambda _url: None

    def apply(url: str) -> None:
        from providers.drizzle.apply import apply_migrations

        apply_migrations(url, journal, table=env.migrations_table)

    return apply


@register_step
@dataclass
class ResetStep:
    """Development reset: drop the database, create it, re-run the migrations."""

    kind: ClassVar[str] = "postgres.reset"
    destructive: ClassVar[bool] = True

    def plan(self, ctx: StepContext) -> Plan:
        env = ctx.environment
        how = (
            f"the team's migrate command `{env.commands.migrate}`"
            if env.commands.migrate
            else f"the built-in drizzle applier over {env.migrations_dir or '(no migrations folder)'}"
        )
        return Plan(
            title="Reset the development database",
            target=describe_environment(env),
            action=f"DROP DATABASE ... WITH (FORCE), CREATE DATABASE, then re-run migrations with {how}",
            data_loss="ALL data in the database (a verified safety snapshot is taken first)",
            details=("refused unless the environment's tier is development",),
        )

    def run(self, ctx: StepContext) -> StepResult:
        from providers.postgres.reset import reset_database

        env = ctx.environment
        url = env.database_url()
        ctx.audit("provider", f"Reset started: {dbname(url)}", {"target": describe(url)})
        reset_database(url, env.tier, _migrate_callable(env, ctx))
        return StepResult(True, f"{dbname(url)} dropped, re-created and migrated")


def storage_of(env: EnvironmentConfig) -> BackupStorage:
    return open_storage(env.backups, endpoint_url=env.backups_s3_endpoint_url)


def leftovers_of_interruption(ctx: StepContext, remove: bool, databases: bool) -> list[str]:
    """What an interrupted snapshot or restore left behind, removed unless ``remove`` is False
    (another step of the environment is running and might own it: then it is only listed)."""
    from providers.postgres.restore import drop_restoring_databases, restoring_databases
    from providers.postgres.snapshot import (
        remove_unfinished_snapshot_folders,
        unfinished_snapshot_folders,
    )

    env = ctx.environment
    names = restoring_databases(env.database_url()) if databases else []
    folders = unfinished_snapshot_folders(storage_of(env))
    found = [f"database {n}" for n in names] + [f"folder {f}" for f in folders]
    if not found:
        return ["nothing was left behind"]
    if not remove:
        return [
            f"left {x}: another step in {env.name} is running; remove it once that is done"
            for x in found
        ]
    drop_restoring_databases(env.database_url(), names)
    remove_unfinished_snapshot_folders(folders)
    return [f"removed the unfinished {x}" for x in found]


def _bytes_reporter(ctx: StepContext, what: str) -> Any:
    def report(done: int) -> None:
        ctx.report(f"{what}: {done / 1_000_000:,.1f} MB")
        ctx.heartbeat()

    return report


@register_step
@dataclass
class SnapshotStep:
    """Take a snapshot and verify it (a safety snapshot before a destructive step)."""

    purpose: str = "safety"
    kind: ClassVar[str] = "postgres.snapshot"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        env = ctx.environment
        return Plan(
            title=f"Take a verified {self.purpose} snapshot",
            target=describe_environment(env),
            action=f"pg_dump into {env.backups} as snapshot-YYYYMMDD-HHMMSS, then verify checksum and contents",
        )

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        return leftovers_of_interruption(ctx, remove, databases=False)

    def run(self, ctx: StepContext) -> StepResult:
        from providers.postgres.snapshot import create_snapshot, verify_snapshot

        env = ctx.environment
        storage = storage_of(env)
        snap = create_snapshot(
            env.database_url(),
            storage,
            migrations_table=env.migrations_table,
            label=f"{self.purpose} snapshot, INC-{ctx.incident_id}",
            purpose=self.purpose,
            incident=ctx.incident_id,
            progress=_bytes_reporter(ctx, "snapshot"),
        )
        verify_snapshot(storage, snap.name)
        ctx.audit(
            "provider", f"Snapshot taken and verified: {snap.name}", {"location": env.backups}
        )
        return StepResult(
            True,
            f"verified snapshot {snap.name} ({snap.summary()})",
            {"snapshot": snap.name, "location": env.backups},
            safety=SafetySnapshot(snap.name, env.backups),
        )


MAX_SOURCES = 50


def source_label(snap: Any) -> str:
    """One line per snapshot: when, how big, of what, at which migration, why taken."""
    m = snap.manifest or {}
    head = (m.get("migrations_head") or {}).get("hash")
    parts = [
        snap.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        human_size(snap.size),
        f"db {m['database']}" if m.get("database") else "no manifest",
    ]
    if head:
        parts.append(f"head {str(head)[:8]}")
    parts.append(snap.purpose or "manual")
    if m.get("incident"):
        parts.append(f"INC-{m['incident']}")
    return " · ".join(parts)


def _precedes(snap: Any, current: dict[str, Any] | None) -> bool:
    """Was ``snap`` taken before the target's current migrations head was applied?"""
    head = (snap.manifest or {}).get("migrations_head")
    if not current or head is None:
        return False
    if not head:
        return True  # no migration applied yet when it was taken
    try:
        return int(head["id"]) < int(current["id"])
    except (KeyError, TypeError, ValueError):
        return head.get("hash") != current.get("hash")


def current_head(env: EnvironmentConfig) -> dict[str, Any] | None:
    """The target's newest applied migration (None without a tracking table)."""
    from providers.postgres.conn import connect
    from providers.postgres.snapshot import migrations_head

    with connect(env.database_url()) as conn:
        return migrations_head(conn, env.migrations_table)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RollbotError(
            f"restore point {value!r} is not an ISO time like 2025-01-15T10:30:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@register_step
@dataclass
class RestoreStep:
    """Restore a verified snapshot (pg_dump restore, and the local stand-in for PITR).

    The snapshot is pinned when the plan is made (``pin``), so the plan people approve
    names the exact snapshot that will be restored, whatever is taken in between.
    """

    snapshot: str | None = None
    before: str | None = None
    mode: str = "swap"
    accept_other_source: bool = False
    no_owner: bool = False
    no_acl: bool = False
    kind: ClassVar[str] = "postgres.restore"
    destructive: ClassVar[bool] = True
    safety_snapshot: ClassVar[str] = "own"

    def _choose(self, storage: BackupStorage, current_head: dict[str, Any] | None = None) -> str:
        """The named snapshot, else the newest one before ``before`` that is not a safety
        snapshot (the state rollbot replaced: restoring it would bring the breakage back),
        preferring one whose migrations head precedes the target's current head (the
        problematic migration is usually the newest one applied)."""
        from providers.postgres.snapshot import get_snapshot, list_snapshots

        if self.snapshot:
            return get_snapshot(storage, self.snapshot).name
        cutoff = _parse_time(self.before)
        candidates = [
            s
            for s in list_snapshots(storage)
            if (cutoff is None or s.created_at < cutoff) and not s.replaced_state
        ]
        if not candidates:
            when = f" taken before {self.before}" if self.before else ""
            raise RollbotError(
                f"no snapshot{when} in {storage.location} other than safety snapshots of "
                "replaced states; name one explicitly, or take one with `rollbot snapshot`"
            )
        before_head = [s for s in candidates if _precedes(s, current_head)]
        return max(before_head or candidates, key=lambda s: s.created_at).name

    def _options(self) -> Any:
        from providers.postgres.restore_checks import RestoreOptions

        return RestoreOptions(self.accept_other_source, self.no_owner, self.no_acl)

    def sources(self, ctx: StepContext) -> list[RestoreSource]:
        """The snapshots people may pick, newest first (at most ``MAX_SOURCES``)."""
        from providers.postgres.snapshot import list_snapshots

        storage = storage_of(ctx.environment)
        try:
            chosen = self._choose(storage, current_head(ctx.environment))
        except RollbotError:
            chosen = None
        return [
            RestoreSource(
                snap.name,
                source_label(snap),
                chosen=snap.name == chosen,
                warning="safety snapshot of a state rollbot replaced"
                if snap.replaced_state
                else None,
            )
            for snap in list_snapshots(storage)[:MAX_SOURCES]
        ]

    def pin(self, ctx: StepContext) -> dict[str, Any]:
        """Params with the snapshot resolved now, for the plan and the run alike."""
        return {
            "snapshot": self._choose(storage_of(ctx.environment), current_head(ctx.environment)),
            "before": self.before,
            "mode": self.mode,
            "accept_other_source": self.accept_other_source,
            "no_owner": self.no_owner,
            "no_acl": self.no_acl,
        }

    def plan(self, ctx: StepContext) -> Plan:
        # pg_dump restore and PITR's local stand-in preview the same restore on one card
        return ctx.read_once(
            ("postgres.restore", dataclasses.astuple(self)), lambda: self._plan(ctx)
        )

    def _plan(self, ctx: StepContext) -> Plan:
        from providers.postgres.conn import plan_connection
        from providers.postgres.restore import plan_restore
        from providers.postgres.snapshot import get_snapshot, migrations_head

        env = ctx.environment
        storage = storage_of(env)
        with plan_connection(ctx) as conn:  # one connection for the whole preview
            current = None if self.snapshot else migrations_head(conn, env.migrations_table)
            name = self._choose(storage, current)
            preview = plan_restore(
                env.database_url(),
                storage,
                name,
                mode=self.mode,  # type: ignore[arg-type]
                migrations_table=env.migrations_table,
                options=self._options(),
                conn=conn,
            )
        lines = preview.lines()
        chosen = get_snapshot(storage, name)
        head = (chosen.manifest or {}).get("migrations_head")
        if head and head == preview.current_migrations_head:
            lines.append(
                f"*{name} is at the same migration as the database now "
                f"(#{head.get('id', '?')}): restoring it does not undo that migration*"
            )
        if chosen.replaced_state:
            lines.append(
                f"*{name} is a SAFETY SNAPSHOT rollbot took of a state it then replaced "
                f"({(chosen.manifest or {}).get('label')}); picked explicitly*"
            )
        action = next((ln for ln in lines if ln.startswith("Method: ")), f"restore {name}")
        return Plan(
            title=f"Restore snapshot {name}",
            target=describe_environment(env),
            action=action,
            restore_point=preview.restore_point.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            data_loss=lines[2].removeprefix("May be lost: "),
            details=tuple(ln for ln in lines[3:] if ln != action),
        )

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        return leftovers_of_interruption(ctx, remove, databases=True)

    def run(self, ctx: StepContext) -> StepResult:
        from providers.postgres.restore import restore_snapshot
        from providers.postgres.snapshot import get_snapshot

        env = ctx.environment
        storage = storage_of(env)
        name = self._choose(storage)
        ctx.audit(
            "provider", f"Restore started: {name}", {"mode": self.mode, "location": env.backups}
        )
        result = restore_snapshot(
            env.database_url(),
            storage,
            name,
            mode=self.mode,  # type: ignore[arg-type]
            migrations_table=env.migrations_table,
            progress=_bytes_reporter(ctx, f"restore {name}"),
            options=self._options(),
        )
        restored_head = (get_snapshot(storage, name).manifest or {}).get("migrations_head")
        kept = f"; previous database kept as {result.kept_database}" if result.kept_database else ""
        ctx.audit(
            "provider", f"Restore finished: {name}", {"safety_snapshot": result.safety_snapshot}
        )
        return StepResult(
            True,
            f"restored {name} (verified safety snapshot {result.safety_snapshot} taken first{kept})",
            {
                "snapshot": name,
                "safety_snapshot": result.safety_snapshot,
                "kept_database": result.kept_database,
                "migrations_head": restored_head,
                "durations": result.durations,
            },
        )
