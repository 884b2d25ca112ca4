"""``rollbot forward-fix draft``: the runbook's preferred method, mechanical parts only.

Prints the drafted reverse of the newest journal entry (or ``--entry``), its
warnings, data-loss notes and every statement that needs a person (by file and
position). stdout is only SQL (the notes are ``--`` comments), so
``rollbot forward-fix draft > reverse.sql`` or ``| psql`` works; what rollbot did
goes to stderr. Nothing is written without ``--write``; with it, the reverse
becomes the next migration in the folder and the runbook's commit message is
printed (on stderr).

Old definitions: when ``--database-url``/``--env`` points at a database that
has NOT run the migration yet, its live catalog is used (the most exact
source); otherwise the previous drizzle snapshot in ``meta/``.
"""

from __future__ import annotations

import argparse
import sys

from bot.errors import NotFoundError
from bot.redact import redact
from handlers.commands.migrations import add_target_args, resolve_target
from providers.drizzle.apply import TrackingTable
from providers.drizzle.journal import Journal, JournalEntry, read_journal
from providers.drizzle.reverse import ReverseDraft, draft_reverse
from providers.drizzle.snapshot_model import OldSchema, from_catalog
from providers.drizzle.tracking import compare, read_tracking_rows
from providers.drizzle.writer import write_revert
from providers.postgres.catalog import describe_schema
from providers.postgres.conn import connect, describe


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("forward-fix", help="draft a forward-fix (reverse) migration")
    inner = p.add_subparsers(dest="forward_fix_command", metavar="ACTION", required=True)
    draft = inner.add_parser("draft", help="draft the reverse of the newest migration")
    add_target_args(draft)
    draft.add_argument(
        "--entry", metavar="TAG", help="reverse this journal entry (default: newest)"
    )
    draft.add_argument(
        "--write", action="store_true", help="add the reverse as the next migration in the folder"
    )
    draft.set_defaults(func=run_draft)


def _catalog_before(
    url: str, table: str, journal: Journal, entry: JournalEntry
) -> tuple[OldSchema | None, str]:
    """The live catalog if the database has not run ``entry``; else None and why."""
    with connect(url) as conn:
        rows = read_tracking_rows(conn, TrackingTable.parse(table), describe(url))
        status = compare(journal, rows, TrackingTable.parse(table))
        if entry in status.applied:
            return (
                None,
                f"{describe(url)} already ran {entry.tag}; its catalog shows the new schema",
            )
        return from_catalog(describe_schema(conn, schemas=None), f"catalog of {describe(url)}"), ""


def draft_for(args: argparse.Namespace) -> tuple[Journal, JournalEntry, ReverseDraft, list[str]]:
    target = resolve_target(args, need_url=False)
    journal = read_journal(target.folder)
    entry = journal.entry(args.entry) if args.entry else journal.newest
    if entry is None:
        raise NotFoundError(f"{target.folder}: the journal has no entries")
    notes: list[str] = []
    before = None
    if target.url:
        before, why = _catalog_before(target.url, target.table, journal, entry)
        if why:
            notes.append(why)
    return journal, entry, draft_reverse(journal, entry, before=before), notes


def sql_comment(text: str) -> str:
    """``text`` as ``--`` lines: a note travels with the SQL, and psql skips it."""
    return "\n".join(f"-- {line}".rstrip() for line in text.splitlines() or [""])


def draft_script(entry: JournalEntry, draft: ReverseDraft, notes: list[str]) -> str:
    """The whole of stdout: valid SQL, every remark a comment (``draft ... | psql`` applies)."""
    lines = [f"-- migration {entry.path.name} (idx {entry.idx}):"]
    lines += [f"--   {line}".rstrip() for line in entry.sql.strip().splitlines()]
    lines += [sql_comment(f"note: {note}") for note in notes]
    lines.append(f"-- reverse of {draft.source}")
    if draft.old_definitions_from:
        lines.append(f"-- old definitions from {draft.old_definitions_from}")
    lines.append(draft.sql.rstrip() or "-- (nothing to reverse mechanically)")
    lines += [sql_comment(f"DATA LOSS: {note}") for note in draft.data_loss]
    lines += [sql_comment(f"warning: {w}") for w in draft.warnings]
    lines += [sql_comment(f"NEEDS A PERSON: {n}") for n in draft.needs_person]
    return redact("\n".join(lines))


def run_draft(args: argparse.Namespace) -> int:
    journal, entry, draft, notes = draft_for(args)
    print(draft_script(entry, draft, notes))
    if not args.write:
        print("(nothing written; pass --write to add it as the next migration)", file=sys.stderr)
        return 0
    written = write_revert(journal, entry, draft)
    tell = sys.stderr  # what was done, for the person: stdout stays the SQL
    print(
        f"wrote {written.entry.path} (journal idx {written.entry.idx}, when {written.entry.when})",
        file=tell,
    )
    for note in written.notes:
        print(f"note: {redact(note)}", file=tell)
    print(f"commit message: {written.commit_message}", file=tell)
    return 0
