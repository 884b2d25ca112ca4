"""Compare a journal with drizzle's tracking table, including what drizzle never checks.

drizzle's migrator only looks at the newest ``created_at`` and applies entries
with a newer ``when``. So three real problems go unnoticed by it:

* hash drift: an applied file edited afterwards (the row's hash differs);
* a backdated entry: a journal entry older than the newest applied row and
  never applied (drizzle silently skips it forever; typical after a merge);
* orphan files: ``.sql`` files the journal does not name (never run).

Rows are matched to entries by ``created_at == when`` (what drizzle stores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from bot.errors import ProviderError
from providers.drizzle.apply import DEFAULT_TABLE, TrackingTable
from providers.drizzle.journal import Journal, JournalEntry
from providers.postgres.conn import connect, describe


class TrackingTableMissingError(ProviderError):
    """The database has no drizzle tracking table (never migrated, or another name)."""


@dataclass(frozen=True)
class TrackingRow:
    id: int
    hash: str
    created_at: int | None


@dataclass(frozen=True)
class HashDrift:
    entry: JournalEntry
    applied_hash: str


@dataclass
class MigrationStatus:
    table: TrackingTable
    applied: list[JournalEntry] = field(default_factory=list)
    pending: list[JournalEntry] = field(default_factory=list)
    drift: list[HashDrift] = field(default_factory=list)
    skipped: list[JournalEntry] = field(default_factory=list)
    unknown_rows: list[TrackingRow] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """One line per problem drizzle itself would not report."""
        out = [
            f"hash drift: {d.entry.path.name} was edited after it was applied "
            f"(applied {d.applied_hash[:12]}, file {d.entry.hash[:12]})"
            for d in self.drift
        ]
        out += [
            f"backdated: {e.path.name} (when={e.when}) is older than the newest applied migration "
            "and was never applied; drizzle skips it silently"
            for e in self.skipped
        ]
        out += [
            f"unknown row: id {r.id} (created_at={r.created_at}) matches no journal entry"
            for r in self.unknown_rows
        ]
        out += [
            f"orphan file: {p.name} is not in the journal; drizzle never runs it"
            for p in self.orphans
        ]
        return out

    def render(self) -> str:
        lines = [
            f"tracking table {self.table}: {len(self.applied)} applied, {len(self.pending)} pending"
        ]
        if self.applied:
            lines.append(f"newest applied: {self.applied[-1].tag}")
        lines += [f"pending: {e.tag}" for e in self.pending]
        lines += [f"problem: {p}" for p in self.problems]
        if not self.problems:
            lines.append("no problems found")
        return "\n".join(lines)


def read_tracking_rows(
    conn: psycopg.Connection, table: TrackingTable, where: str = "the database"
) -> list[TrackingRow]:
    """All rows, oldest first; a missing table is a clear :class:`TrackingTableMissingError`."""
    qualified = sql.Identifier(table.schema, table.table).as_string(conn)
    exists = conn.execute("SELECT to_regclass(%s)", (qualified,)).fetchone()
    if exists is None or exists[0] is None:
        raise TrackingTableMissingError(
            f"tracking table {table} does not exist in {where}; "
            "has drizzle migrated this database, or is the table configured differently?"
        )
    cur = conn.execute(
        sql.SQL("SELECT id, hash, created_at FROM {} ORDER BY created_at, id").format(table.ident)
    )
    return [TrackingRow(int(r[0]), str(r[1]), None if r[2] is None else int(r[2])) for r in cur]


def compare(journal: Journal, rows: list[TrackingRow], table: TrackingTable) -> MigrationStatus:
    """Pure comparison of a journal with tracking rows (no database needed)."""
    status = MigrationStatus(table=table, orphans=journal.orphan_files())
    by_when: dict[int, TrackingRow] = {}
    for row in rows:
        if row.created_at is not None:
            by_when.setdefault(row.created_at, row)
    newest = max((r.created_at for r in rows if r.created_at is not None), default=None)
    matched: set[int] = set()
    for entry in journal.entries:
        row = by_when.get(entry.when)
        if row is not None:
            matched.add(row.id)
            status.applied.append(entry)
            if row.hash != entry.hash:
                status.drift.append(HashDrift(entry, row.hash))
        elif newest is None or entry.when > newest:
            status.pending.append(entry)
        else:
            status.skipped.append(entry)
    status.unknown_rows = [r for r in rows if r.id not in matched]
    return status


def migration_status(
    url: str, journal: Journal, table: str | TrackingTable = DEFAULT_TABLE
) -> MigrationStatus:
    """Read the tracking table at ``url`` and compare it with ``journal``."""
    tracking = TrackingTable.parse(table)
    with connect(url) as conn:
        rows = read_tracking_rows(conn, tracking, describe(url))
    return compare(journal, rows, tracking)
