"""Drizzle step kinds for the forward-fix method: review the drafted reverse, apply migrations.

``drizzle.review_reverse`` is the runbook's "identify the problematic change" and
"generate reverse migration": its ``plan()`` shows the migration, the drafted
reverse and everything a reviewer must judge, so the approval is an approval of
that SQL; its ``run()`` writes the draft as the next migration. ``drizzle.apply``
applies pending journal entries with the built-in applier when the team has no
migrate command configured (drills, plain PostgreSQL setups).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bot.audit import append_audit_line
from bot.config import EnvironmentConfig
from bot.errors import ConfigError, RollbotError
from bot.steps import Plan, StepContext, StepResult, register_step
from providers.drizzle.journal import Journal, JournalEntry, read_journal
from providers.drizzle.reverse import ReverseDraft, draft_reverse
from providers.postgres.conn import describe_environment

MAX_SQL_LINES = 40


def migrations_journal(env: EnvironmentConfig) -> Journal:
    """The environment's journal; a clear ConfigError when no folder is configured."""
    if env.migrations_dir is None:
        raise ConfigError(
            [
                f"environment {env.name!r} has no migrations_dir configured; the forward-fix "
                f"needs the drizzle migrations folder ([environments.{env.name}] "
                'migrations_dir = "...")'
            ]
        )
    return read_journal(env.migrations_dir)


def identify(journal: Journal, tag: str | None = None) -> tuple[JournalEntry, JournalEntry | None]:
    """The migration to reverse, and its revert if rollbot already wrote it.

    Default: the newest entry. When the newest entry is rollbot's revert of the one
    before it (a re-run after a crash, or a second look), that earlier entry is
    the one being reversed, never the revert itself.
    """
    if tag:
        source = journal.entry(tag)
    elif journal.newest is None:
        raise RollbotError(f"{journal.folder}: the journal has no entries; nothing to reverse")
    else:
        source = journal.newest
    position = journal.entries.index(source)
    later = journal.entries[position + 1 :]
    revert = next(
        (e for e in later if re.fullmatch(rf"\d+_revert_{re.escape(source.tag)}", e.tag)), None
    )
    if revert is None and not tag and position > 0:
        previous = journal.entries[position - 1]
        if re.fullmatch(rf"\d+_revert_{re.escape(previous.tag)}", source.tag):
            return previous, source
    return source, revert


def pending_entries(url: str, journal: Journal, table: str) -> tuple[list[JournalEntry], list[str]]:
    """Entries drizzle would apply now, and the problems it would silently ignore."""
    from providers.drizzle.tracking import TrackingTableMissingError, migration_status

    try:
        status = migration_status(url, journal, table)
    except TrackingTableMissingError:
        return list(journal.entries), []
    return status.pending, status.problems


def _sql_block(text: str, indent: str = "      ") -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    shown = lines[:MAX_SQL_LINES]
    if len(lines) > MAX_SQL_LINES:
        shown.append(f"... ({len(lines) - MAX_SQL_LINES} more lines)")
    return "\n".join(indent + line for line in shown) or f"{indent}(empty)"


@register_step
@dataclass
class ReviewReverseStep:
    """Show the identified migration and its drafted reverse; on approval, write the draft."""

    entry: str | None = None
    kind: ClassVar[str] = "drizzle.review_reverse"
    destructive: ClassVar[bool] = False

    def _draft(
        self, env: EnvironmentConfig
    ) -> tuple[Journal, JournalEntry, JournalEntry | None, ReverseDraft]:
        journal = migrations_journal(env)
        source, revert = identify(journal, self.entry)
        return journal, source, revert, draft_reverse(journal, source)

    def pin(self, ctx: StepContext) -> dict[str, str | None]:
        """Name the reviewed migration now: one added after approval is not reversed instead."""
        _journal, source, _revert, _draft = self._draft(ctx.environment)
        return {"entry": source.tag}

    def plan(self, ctx: StepContext) -> Plan:
        env = ctx.environment
        journal, source, revert, draft = self._draft(env)
        details = [
            f"identified migration {source.path.name} (journal idx {source.idx}):\n"
            + _sql_block(source.sql),
            "drafted reverse:\n" + _sql_block(draft.sql or "-- (nothing to reverse mechanically)"),
        ]
        if draft.old_definitions_from:
            details.append(f"old definitions from {draft.old_definitions_from}")
        details += [f"warning: {w}" for w in draft.warnings]
        details += [f"NEEDS A PERSON: {n}" for n in draft.needs_person]
        if draft.needs_person:
            details.append(
                "this draft is incomplete: rollbot writes it and stops before migrating; "
                "finish the statements above in the file, then run the migration"
            )
        if revert is not None:
            details.append(f"already written as {revert.path.name}; it is not written again")
        return Plan(
            title="Review the drafted forward-fix (reverse) migration",
            target=f"{journal.folder} ({env.name}, {env.tier})",
            action=(
                f"write the reverse of {source.tag} as the next migration in the folder "
                "(with its journal entry), for the migrate step to apply"
            ),
            data_loss="; ".join(draft.data_loss) or "none expected from the reverse itself",
            details=tuple(details),
            files=((f"reverse-{source.tag}.sql", draft.sql),) if draft.sql else (),
        )

    def run(self, ctx: StepContext) -> StepResult:
        from providers.drizzle.writer import commit_message, write_revert

        env = ctx.environment
        journal, source, revert, draft = self._draft(env)
        ctx.report(draft.render())
        if revert is None and not draft.statements:
            reasons = "; ".join(str(n) for n in draft.needs_person) or "it has no statements"
            return StepResult(
                False,
                f"nothing written: the reverse of {source.path.name} cannot be drafted "
                f"mechanically; {len(draft.needs_person)} statement(s) need a person: {reasons}",
                {"source": source.tag, "needs_person": [str(n) for n in draft.needs_person]},
            )
        if revert is None:
            written = write_revert(journal, source, draft)
            revert, notes, message = written.entry, written.notes, written.commit_message
            ctx.audit(
                "forward_fix",
                f"Forward-fix written: {revert.path.name} reverses {source.path.name}",
                {"source": source.tag, "revert": revert.tag, "path": str(revert.path)},
            )
        else:
            notes, message = (
                [f"{revert.path.name} was already written; not written again"],
                commit_message(source),
            )
        data = {
            "source": source.tag,
            "migration": source.tag,  # identified: the checklist's first item, with evidence
            "revert": revert.tag,
            "path": str(revert.path),
            "commit_message": message,
            "notes": notes,
            "warnings": list(draft.warnings),
            "data_loss": list(draft.data_loss),
            "needs_person": [str(n) for n in draft.needs_person],
        }
        if draft.needs_person:
            return StepResult(
                False,
                f"wrote {revert.path.name}, but {len(draft.needs_person)} statement(s) need a "
                f"person before it can run (first: {draft.needs_person[0]}); finish the file, "
                "then run the migration",
                data,
            )
        return StepResult(True, f"wrote {revert.path.name}; commit message: {message}", data)


@register_step
@dataclass
class ApplyStep:
    """Apply pending journal entries like drizzle's migrate() (no migrate command configured)."""

    kind: ClassVar[str] = "drizzle.apply"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        env = ctx.environment
        folder = env.migrations_dir or Path("(no migrations_dir configured)")
        return Plan(
            title="Apply pending migrations with the built-in drizzle applier",
            target=describe_environment(env),
            action=(
                f"apply every journal entry of {folder} newer than the newest row of "
                f"{env.migrations_table}, in one transaction, like drizzle's migrate()"
            ),
            data_loss="what the pending migrations drop (see the reviewed reverse above)",
        )

    def run(self, ctx: StepContext) -> StepResult:
        from providers.drizzle.apply import apply_migrations

        env = ctx.environment
        journal = migrations_journal(env)
        url = env.database_url()
        pending, problems = pending_entries(url, journal, env.migrations_table)
        for problem in problems:
            ctx.report(f"warning: {problem}")
        if not pending:
            return StepResult(True, "no pending migrations", {"applied": []})
        name = ", ".join(e.tag for e in pending)

        def log(message: str, data: dict[str, Any]) -> None:
            ctx.audit("migration", message, data)
            if ctx.settings.audit_log is None:  # else the audit trail wrote it already
                append_audit_line(journal.folder / "audit.log", message)

        log(f"Migration started: {name}", {"how": "built-in drizzle applier"})
        started = time.monotonic()
        try:
            applied = apply_migrations(url, journal, table=env.migrations_table)
        except RollbotError as exc:
            seconds = round(time.monotonic() - started, 2)
            log(f"Migration failed: {name} ({exc})", {"seconds": seconds})
            raise
        seconds = round(time.monotonic() - started, 2)
        names = ", ".join(e.tag for e in applied) or "nothing"
        log(f"Migration finished: {names} ({seconds}s)", {"seconds": seconds})
        ctx.report(f"applied: {names}")
        return StepResult(
            True,
            f"applied {len(applied)} migration(s): {names}",
            {"applied": [e.tag for e in applied], "seconds": seconds},
        )
