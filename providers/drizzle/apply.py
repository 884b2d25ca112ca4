"""A built-in applier that behaves like drizzle-orm's ``migrate()`` for node-postgres.

Why our own: tests, drills and the forward-fix workflow must apply a folder
exactly as drizzle would, without Node. What drizzle does (pg-core dialect):

1. ``CREATE SCHEMA IF NOT EXISTS`` and ``CREATE TABLE IF NOT EXISTS`` the tracking
   table ``(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)``;
2. reads the newest row ``ORDER BY created_at DESC LIMIT 1``;
3. in ONE transaction, for every journal entry whose ``when`` is newer than that
   row, sends each breakpoint-separated chunk as plain text (simple query
   protocol, so a chunk may hold several statements) and inserts
   ``(hash, when)``; it never compares hashes.

``COMMIT;`` inside a migration (used to run ``CREATE INDEX CONCURRENTLY``): drizzle
just sends the text, so the server commits everything so far and the following
chunks run in autocommit until drizzle's final ``COMMIT`` (which PostgreSQL
answers with a harmless "no transaction in progress" warning). We reproduce
that: the connection is in autocommit mode, we send ``BEGIN``/``COMMIT``
ourselves, and we only send the final ``COMMIT`` (or ``ROLLBACK`` on failure)
while a transaction is actually open.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import pq, sql

from bot.errors import ProviderError
from bot.redact import redact
from providers.drizzle.journal import BREAKPOINT, Journal, JournalEntry
from providers.postgres.conn import connect, describe

DEFAULT_TABLE = "drizzle.__drizzle_migrations"


@dataclass(frozen=True)
class TrackingTable:
    """``schema.table`` of drizzle's tracking table (``migrationsSchema``/``migrationsTable``)."""

    schema: str
    table: str

    @classmethod
    def parse(cls, name: str | TrackingTable = DEFAULT_TABLE) -> TrackingTable:
        if isinstance(name, TrackingTable):
            return name
        schema, dot, table = name.rpartition(".")
        if not table or (dot and not schema):
            raise ProviderError(f"tracking table {name!r} must look like 'schema.table'")
        return cls(schema or "drizzle", table)

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.table)

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


def drizzle_chunks(entry: JournalEntry) -> list[str]:
    """What drizzle sends for an entry: the file split on the breakpoint (always), blanks skipped."""
    return [chunk for chunk in entry.sql.split(BREAKPOINT) if chunk.strip()]


def ensure_tracking_table(conn: psycopg.Connection, table: TrackingTable) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)"
        ).format(table.ident)
    )


def newest_applied_when(conn: psycopg.Connection, table: TrackingTable) -> int | None:
    row = conn.execute(
        sql.SQL("SELECT created_at FROM {} ORDER BY created_at DESC LIMIT 1").format(table.ident)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _in_transaction(conn: psycopg.Connection) -> bool:
    return conn.pgconn.transaction_status in (
        pq.TransactionStatus.INTRANS,
        pq.TransactionStatus.INERROR,
    )


def apply_migrations(
    url: str,
    journal: Journal,
    table: str | TrackingTable = DEFAULT_TABLE,
    upto: int | None = None,
) -> list[JournalEntry]:
    """Apply pending entries (idx <= ``upto`` when given) like drizzle; return those applied.

    A failing statement rolls back what is still in the open transaction and
    raises :class:`ProviderError` naming the file and the statement's position.
    """
    tracking = TrackingTable.parse(table)
    with connect(url, autocommit=True) as conn:
        ensure_tracking_table(conn, tracking)
        newest = newest_applied_when(conn, tracking)
        todo = [
            e
            for e in journal.entries
            if (upto is None or e.idx <= upto) and (newest is None or newest < e.when)
        ]
        if not todo:
            return []
        conn.execute("BEGIN")
        for entry in todo:
            for position, chunk in enumerate(drizzle_chunks(entry), start=1):
                try:
                    conn.execute(chunk)
                except psycopg.Error as exc:
                    if _in_transaction(conn):
                        conn.execute("ROLLBACK")
                    reason = redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
                    raise ProviderError(
                        f"{entry.path.name} statement {position} failed on {describe(url)}: {reason}"
                    ) from None
            conn.execute(
                sql.SQL("INSERT INTO {} (hash, created_at) VALUES (%s, %s)").format(tracking.ident),
                (entry.hash, entry.when),
            )
        if _in_transaction(conn):
            conn.execute("COMMIT")
        return todo


def apply_sql(url: str, text: str, label: str = "SQL") -> None:
    """Run one migration's text the way drizzle would (breakpoint chunks, one transaction)."""
    chunks = [c for c in text.split(BREAKPOINT) if c.strip()]
    with connect(url, autocommit=True) as conn:
        conn.execute("BEGIN")
        for position, chunk in enumerate(chunks, start=1):
            try:
                conn.execute(chunk)
            except psycopg.Error as exc:
                if _in_transaction(conn):
                    conn.execute("ROLLBACK")
                reason = redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
                raise ProviderError(f"{label} statement {position} failed: {reason}") from None
        if _in_transaction(conn):
            conn.execute("COMMIT")
