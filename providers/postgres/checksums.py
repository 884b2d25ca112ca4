"""Per-table row counts and content hashes, to prove a round trip lost nothing.

The hash is ``sum(hashtextextended(row::text, 0))``: order-independent (a restore
may load rows in any order), sensitive to every column value and to duplicate
rows, and computed by the server in one sequential scan per table, with no rows
sent to us, so it stays fast on hundreds of MB.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql

TableChecksums = dict[str, tuple[int, str]]


def user_tables(conn: psycopg.Connection, schemas: Iterable[str] | None) -> list[tuple[str, str]]:
    """(schema, table) of tables holding rows (partitions, not their parents); None: all schemas."""
    query = """
        SELECT n.nspname, c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
          AND n.nspname !~ '^pg_(toast_)?temp_'
    """
    params: list[object] = []
    if schemas is not None:
        query += " AND n.nspname = ANY(%s)"
        params.append(list(schemas))
    query += " ORDER BY 1, 2"
    return [(s, t) for s, t in conn.execute(query, params).fetchall()]


def table_checksums(
    conn: psycopg.Connection, schemas: Iterable[str] | None = ("public",)
) -> TableChecksums:
    """``{"schema.table": (row_count, content_hash)}`` for every table in ``schemas``."""
    return {
        f"{schema}.{table}": table_checksum(conn, sql.Identifier(schema, table))
        for schema, table in user_tables(conn, schemas)
    }


def table_checksum(conn: psycopg.Connection, ident: sql.Composable) -> tuple[int, str]:
    """Row count and order-independent content hash of one table.

    ``ROW(t.*)`` rather than ``t``: the same text, but a column named ``t`` cannot
    stand in for the whole row.
    """
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(hashtextextended(ROW(t.*)::text, 0)), 0)::text FROM {} t"
        ).format(ident)
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def row_counts(conn: psycopg.Connection, schemas: Iterable[str] | None = None) -> dict[str, int]:
    """Exact ``count(*)`` per table (cheaper than checksums; recorded in snapshot manifests)."""
    out: dict[str, int] = {}
    for schema, table in user_tables(conn, schemas):
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        ).fetchone()
        assert row is not None
        out[f"{schema}.{table}"] = int(row[0])
    return out
