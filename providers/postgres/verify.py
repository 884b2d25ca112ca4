"""Verify a database after a migration or a rollback: the runbook's "Verify" step, made checkable.

The runbook's check is ``SELECT * FROM _drizzle_migrations ORDER BY id DESC
LIMIT 5`` and a person eyeballing it. Here the same rows are read and compared
with the migrations folder's journal (is the applied head the journal's newest
entry? rows the journal does not know? entries still pending?), the largest
tables are counted, and the team's smoke queries run in a read-only
transaction with a timeout. Every problem is a finding in the report rather than
an exception, so one run shows everything wrong at once; only "cannot connect"
raises, because then nothing can be checked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from bot.errors import ProviderError
from bot.redact import redact
from providers.drizzle.journal import Journal, JournalEntry
from providers.postgres.conn import connect, describe

DEFAULT_MIGRATIONS_TABLE = "drizzle.__drizzle_migrations"
RECENT_ROWS = 5


@dataclass(frozen=True)
class AppliedMigration:
    """One row of the tracking table, with the journal entry it matches (by ``when``)."""

    id: int
    hash: str
    created_at: int | None
    tag: str | None = None


@dataclass(frozen=True)
class SmokeResult:
    query: str
    ok: bool
    detail: str
    seconds: float


@dataclass
class VerificationReport:
    database: str
    migrations_table: str
    table_found: bool = False
    recent: list[AppliedMigration] = field(default_factory=list)
    applied_count: int = 0
    journal_head: str | None = None
    expected_head: str | None = None
    head_matches: bool | None = None
    unknown_rows: list[AppliedMigration] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    table_rows: list[tuple[str, int]] = field(default_factory=list)
    smoke: list[SmokeResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # worth reading, not a failure

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def head(self) -> AppliedMigration | None:
        return self.recent[0] if self.recent else None

    def lines(self) -> list[str]:
        """The report for people, one fact per line, secrets masked."""
        out = [f"database {self.database}: {'OK' if self.ok else 'PROBLEMS FOUND'}"]
        if self.table_found:
            out.append(
                f"migrations table {self.migrations_table}: {self.applied_count} applied, "
                f"newest {RECENT_ROWS}:"
            )
            for row in self.recent:
                tag = row.tag or "not in journal"
                out.append(f"  id {row.id}  created_at {row.created_at}  {row.hash[:12]}  ({tag})")
            if self.expected_head is not None:
                state = "matches" if self.head_matches else "DOES NOT match"
                out.append(f"head {state} the expected {self.expected_head}")
            if self.pending:
                out.append(f"pending (in journal, not applied): {', '.join(self.pending)}")
        if self.table_rows:
            out.append("largest tables (rows):")
            width = max(len(name) for name, _ in self.table_rows)
            out += [f"  {name.ljust(width)}  {count:>12,}" for name, count in self.table_rows]
        for s in self.smoke:
            out.append(
                f"smoke {'pass' if s.ok else 'FAIL'} ({s.seconds:.2f}s): {s.query} -> {s.detail}"
            )
        out += [f"problem: {p}" for p in self.problems]
        out += [f"warning: {w}" for w in self.warnings]
        return [redact(line) for line in out]


def tracking_identifiers(name: str) -> list[sql.Identifier]:
    """Where the table may live, quoted safely, in the order to look.

    ``schema.table`` is exact. A bare ``table`` is looked up through the search
    path (the runbook's ``_drizzle_migrations``) and then in the ``drizzle``
    schema, which is where drizzle puts a custom ``migrationsTable`` when no
    ``migrationsSchema`` is set (and where the built-in applier writes it).
    """
    schema, dot, table = name.rpartition(".")
    if not table or (dot and not schema) or "." in schema:
        raise ProviderError(f"migrations table {name!r} must look like 'table' or 'schema.table'")
    if dot:
        return [sql.Identifier(schema, table)]
    return [sql.Identifier(table), sql.Identifier("drizzle", table)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0]) if text else type(exc).__name__


def _read_tracking(
    conn: psycopg.Connection,
    report: VerificationReport,
    candidates: list[sql.Identifier],
    required: bool,
) -> list[AppliedMigration]:
    """All rows newest first, or [] with a finding when the table is missing or unreadable.

    A missing table is a problem when migrations are expected (a journal with
    entries, or an expected head); otherwise only a warning, since without a
    journal nothing says this database should have been migrated.
    """
    ident = None
    for candidate in candidates:
        found = conn.execute("SELECT to_regclass(%s)", (candidate.as_string(conn),)).fetchone()
        if found is not None and found[0] is not None:
            ident = candidate
            break
    if ident is None:
        (report.problems if required else report.warnings).append(
            f"migrations table {report.migrations_table} does not exist: this database was never "
            "migrated, or the table is configured under another name (migrations_table)"
        )
        return []
    try:
        with conn.transaction():
            rows = conn.execute(
                sql.SQL("SELECT id, hash, created_at FROM {} ORDER BY id DESC").format(ident)
            ).fetchall()
    except psycopg.Error as exc:
        report.problems.append(
            f"migrations table {report.migrations_table} cannot be read: {_first_line(exc)}"
        )
        return []
    report.table_found = True
    return [
        AppliedMigration(int(r[0]), str(r[1]), None if r[2] is None else int(r[2])) for r in rows
    ]


def _compare_with_journal(
    report: VerificationReport,
    rows: list[AppliedMigration],
    journal: Journal,
    expected_head: str | None,
) -> list[AppliedMigration]:
    by_when: dict[int, JournalEntry] = {e.when: e for e in journal.entries}
    tagged = [
        AppliedMigration(
            r.id, r.hash, r.created_at, getattr(by_when.get(r.created_at), "tag", None)
        )
        for r in rows
    ]
    newest = journal.newest
    report.journal_head = newest.tag if newest else None
    report.expected_head = expected_head if expected_head is not None else report.journal_head
    report.unknown_rows = [r for r in tagged if r.tag is None]
    for r in report.unknown_rows:
        report.problems.append(
            f"applied migration id {r.id} (created_at {r.created_at}, hash {r.hash[:12]}) "
            "is not in the journal"
        )
    for r in tagged:
        entry = by_when.get(r.created_at) if r.created_at is not None else None
        if entry is not None and entry.hash != r.hash:
            report.problems.append(
                f"{entry.path.name} was edited after it was applied "
                f"(applied hash {r.hash[:12]}, file {entry.hash[:12]})"
            )
    applied_whens = [r.created_at for r in rows if r.created_at is not None]
    newest_when = max(applied_whens, default=None)
    report.pending = [e.tag for e in journal.entries if newest_when is None or e.when > newest_when]
    head = tagged[0] if tagged else None
    if report.expected_head is None:
        report.head_matches = head is None
    else:
        report.head_matches = head is not None and head.tag == report.expected_head
        if not report.head_matches:
            actual = "nothing applied" if head is None else (head.tag or f"id {head.id}")
            report.problems.append(
                f"head mismatch: newest applied is {actual}, expected {report.expected_head}"
            )
    return tagged


def _largest_tables(
    conn: psycopg.Connection, report: VerificationReport, largest: int, timeout_ms: int
) -> None:
    if largest <= 0:
        return
    names = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_%%'
        ORDER BY pg_total_relation_size(c.oid) DESC, n.nspname, c.relname LIMIT %s
        """,
        (largest,),
    ).fetchall()
    for schema, table in names:
        label = table if schema == "public" else f"{schema}.{table}"
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(timeout_ms))
                row = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
                ).fetchone()
        except psycopg.Error as exc:
            report.problems.append(f"cannot count rows of {label}: {_first_line(exc)}")
            continue
        report.table_rows.append((label, int(row[0]) if row else 0))


def run_smoke_query(conn: psycopg.Connection, query: str, timeout_ms: int) -> SmokeResult:
    """Run one query read-only with a timeout; a single boolean result must be true."""
    started = time.monotonic()
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(timeout_ms))
            cur = conn.execute(query)
            rows = cur.fetchmany(2) if cur.description else []
    except psycopg.Error as exc:
        return SmokeResult(query, False, _first_line(exc), time.monotonic() - started)
    seconds = time.monotonic() - started
    if len(rows) == 1 and len(rows[0]) == 1 and isinstance(rows[0][0], bool):
        return SmokeResult(query, rows[0][0], "true" if rows[0][0] else "false", seconds)
    if not rows:
        return SmokeResult(query, True, "ran, no rows", seconds)
    first = rows[0][0] if len(rows[0]) == 1 else rows[0]
    more = " (more rows)" if len(rows) > 1 else ""
    return SmokeResult(query, True, redact(f"{first!r}"[:80]) + more, seconds)


def verify_database(
    url: str,
    *,
    migrations_table: str = DEFAULT_MIGRATIONS_TABLE,
    journal: Journal | None = None,
    smoke_queries: Iterable[str] = (),
    largest: int = 10,
    expected_head: str | None = None,
    timeout_seconds: float = 30.0,
) -> VerificationReport:
    """Check the database at ``url``; see :class:`VerificationReport`.

    With a ``journal``, the newest applied row must be the journal's newest entry,
    or ``expected_head`` (a tag) when given, e.g. after restoring to the state
    before the newest migration. A smoke query passes when it runs without error
    within the timeout; if it returns a single boolean, that value must be true.
    """
    candidates = tracking_identifiers(migrations_table)
    report = VerificationReport(database=describe(url), migrations_table=migrations_table)
    timeout_ms = max(1, int(timeout_seconds * 1000))
    with connect(url, autocommit=True) as conn:
        required = expected_head is not None or bool(journal and journal.entries)
        rows = _read_tracking(conn, report, candidates, required)
        report.applied_count = len(rows)
        if report.table_found and journal is not None:
            rows = _compare_with_journal(report, rows, journal, expected_head)
        elif expected_head is not None and report.table_found:
            report.problems.append(
                "an expected head needs the journal to name the rows; none was given"
            )
        report.recent = rows[:RECENT_ROWS]
        _largest_tables(conn, report, largest, timeout_ms)
        for query in smoke_queries:
            result = run_smoke_query(conn, query, timeout_ms)
            report.smoke.append(result)
            if not result.ok:
                report.problems.append(f"smoke query failed: {query} -> {result.detail}")
    return report
