"""What a database holds, recorded before a dump and compared after a restore (deep verify).

A restore that "worked" can still have lost things: a table's rows, a function
whose body failed to compile, a sequence that will hand out used ids again, the
``REVOKE CONNECT`` that kept strangers out. :func:`take_fingerprint` records what
the database holds, as a JSON-serialisable dict a snapshot manifest can carry, and
:func:`compare_fingerprints` names every difference after a restore.

Recorded:

* every user table holding rows (leaf partitions, not their parents; the set is
  :func:`providers.postgres.checksums.user_tables`): exact row count and a content
  checksum. The checksum is the one of ``checksums.table_checksums``
  (``sum(hashtextextended(row::text, 0))``: order-independent, so a restore that
  loads rows in another order or another physical layout still matches; sensitive to
  every column and to duplicate rows).
* below ``full_below_bytes`` (``pg_table_size``) every row is hashed (``"full"``).
  At or above it a deterministic sample is hashed (``"sample"``), chosen by content
  only, never by physical position (``TABLESAMPLE`` and ``ctid`` change with a restore):

  - ``pk-ranges`` (a single-column integer primary key): the key's span
    ``[min, max]`` is cut into ``SAMPLE_WINDOWS`` equal windows and the first
    ``ceil(sample_rows / SAMPLE_WINDOWS)`` rows of each, in key order, are hashed:
    a few index range scans, whatever the table's size.
  - ``pk-hash`` (any other primary key): rows whose
    ``hashtextextended(ROW(key)::text, 0) % modulus = 0``, with
    ``modulus = ceil(rows / sample_rows)``: one scan, but only the key is hashed for
    every row (wide and TOASTed columns are read for the sampled rows only).
  - a table without a primary key has no content-defined order to sample by: it is
    hashed in full, and the entry says why (``"reason"``).

  A restored table is often smaller (no bloat), so the size rule alone could hash
  a table in full on one side and sample it on the other. Pass the expected
  fingerprint as ``like=`` when taking the actual one: each table is then hashed
  the way it was the first time (same method, same windows or modulus).
* materialized views: populated or not, rows and checksum. A restore refreshes
  them, so a content difference is reported as expected, never as a failure.
* sequences: ``last_value`` and ``is_called`` read from the sequence itself, as
  pg_dump reads them for its ``setval``; the increment, to know the next value.
  Sequences are not transactional, so they are read first; a restored sequence
  ahead of the fingerprint is an expected difference, one behind it is a problem.
* names (and so counts) of schemas, extensions (with versions), functions,
  procedures and aggregates (schema-qualified, argument types without names),
  non-internal triggers, views, materialized views, indexes and constraints (NOT
  NULL constraints excluded: they are catalog rows only from PostgreSQL 18 on).
* the database's ACL (``pg_database.datacl``; NULL means the default for its
  owner) and the number of large objects.
* the settings that shape ``row::text`` (time zone, date style, ...): checksums
  taken under different settings are not comparable, and the comparison says so.

Layout (``FORMAT`` 1; names are ``schema.name``)::

    {"format": 1, "database": "app", "server_version_num": 150004,
     "text_settings": {"TimeZone": "UTC", ...}, "full_below_bytes": ..., "sample_rows": ...,
     "tables": {"public.users": {"rows": 3000, "bytes": 491520, "method": "full",
                                 "checksum": "-1234..."},
                "public.big": {"rows": ..., "bytes": ..., "method": "sample", "checksum": ...,
                               "sample": {"by": "pk-ranges", "key": ["id"], "windows": 16,
                                          "rows_per_window": 625, "bounds": [[1, 62500], ...],
                                          "rows": 10000}},
                "public.log": {..., "method": "full", "reason": "no primary key to sample by"}},
     "matviews": {"public.mv": {"populated": true, "rows": 5, "checksum": "..."}},
     "sequences": {"public.users_id_seq": {"last_value": 3000, "is_called": true,
                                           "increment": 1}},
     "objects": {"schemas": [...], "extensions": ["plpgsql 1.0"],
                 "functions": ["public.add(integer, integer)", "public.p() [procedure]"],
                 "triggers": ["public.users: users_touch"], "views": [...], "matviews": [...],
                 "indexes": ["public.users_pkey"], "constraints": ["public.users: users_pkey"]},
     "database_acl": {"owner": "app", "acl": "{=T/app,app=CTc/app}" or null,
                      "default": "{=Tc/app,app=CTc/app}",
                      "effective": ["PUBLIC=TEMPORARY/app", "app=CONNECT/app", ...]},
     "large_objects": 0}

A ``pk-hash`` sample has ``"modulus"`` instead of windows and bounds.

Consistency: a connection in autocommit mode gets its own REPEATABLE READ, READ
ONLY transaction. Any other connection is used as it is, inside the caller's
transaction (e.g. the one whose exported snapshot pg_dump uses), which is never
committed or closed here. Only read-only statements are run. Like pg_dump, run it as
a role that sees every row (owner, superuser or BYPASSRLS): row-level security
would otherwise filter rows silently.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from bot.redact import redact
from providers.postgres.checksums import table_checksum, user_tables

FORMAT = 1
DEFAULT_FULL_BELOW_BYTES = 1_000_000_000
DEFAULT_SAMPLE_ROWS = 10_000
SAMPLE_WINDOWS = 16
TEXT_SETTINGS = (
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "extra_float_digits",
    "bytea_output",
    "lc_monetary",
)
_INTEGER_TYPES = ("smallint", "integer", "bigint")
_USER_NS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
    "AND n.nspname !~ '^pg_(toast_)?temp_'"
)
_RELATIONS = """
    SELECT n.nspname || '.' || c.relname FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ({kinds}) AND {ns}"""
_OBJECT_QUERIES: dict[str, str] = {
    "schemas": "SELECT n.nspname FROM pg_namespace n WHERE {ns}",
    "extensions": "SELECT e.extname || ' ' || e.extversion FROM pg_extension e",
    "functions": """
        SELECT n.nspname || '.' || p.proname
               || '(' || oidvectortypes(p.proargtypes) || ')'
               || CASE p.prokind WHEN 'p' THEN ' [procedure]' WHEN 'a' THEN ' [aggregate]'
                                 WHEN 'w' THEN ' [window]' ELSE '' END
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {ns}""",
    "triggers": """
        SELECT n.nspname || '.' || c.relname || ': ' || t.tgname
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND {ns}""",
    "views": _RELATIONS.replace("{kinds}", "'v'"),
    "matviews": _RELATIONS.replace("{kinds}", "'m'"),
    "indexes": _RELATIONS.replace("{kinds}", "'i', 'I'"),
    "constraints": """
        SELECT n.nspname || '.' || coalesce(c.relname, ty.typname || ' (domain)')
               || ': ' || con.conname
        FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
        LEFT JOIN pg_class c ON c.oid = con.conrelid LEFT JOIN pg_type ty ON ty.oid = con.contypid
        WHERE con.contype <> 'n' AND {ns}""",
}
_SINGULAR = {
    "schemas": "schema",
    "extensions": "extension",
    "functions": "function",
    "triggers": "trigger",
    "views": "view",
    "matviews": "matview",
    "indexes": "index",
    "constraints": "constraint",
}

Fingerprint = dict[str, Any]


# ------------------------------------------------------------------ taking


def take_fingerprint(
    conn: psycopg.Connection,
    *,
    full_below_bytes: int = DEFAULT_FULL_BELOW_BYTES,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    like: Mapping[str, Any] | None = None,
) -> Fingerprint:
    """What the database of ``conn`` holds (see the module's docstring for the layout).

    ``like``: an earlier fingerprint whose per-table methods to repeat, so the two
    are comparable even if a table's size crossed ``full_below_bytes`` in between.
    """
    if sample_rows < 1:
        raise ValueError("sample_rows must be at least 1")
    if conn.autocommit:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _take(conn, full_below_bytes, sample_rows, like)
    return _take(conn, full_below_bytes, sample_rows, like)


def _take(
    conn: psycopg.Connection,
    full_below: int,
    sample_rows: int,
    like: Mapping[str, Any] | None,
) -> Fingerprint:
    sequences = _sequences(conn)  # first: they move outside any snapshot (see _compare_sequence)
    hints: Mapping[str, Any] = (like or {}).get("tables") or {}
    tables = {
        f"{s}.{t}": _table(conn, s, t, full_below, sample_rows, hints.get(f"{s}.{t}"))
        for s, t in user_tables(conn, None)
    }
    return {
        "format": FORMAT,
        "database": _scalar(conn, "SELECT current_database()"),
        "server_version_num": int(conn.info.server_version),
        "text_settings": _text_settings(conn),
        "full_below_bytes": full_below,
        "sample_rows": sample_rows,
        "tables": tables,
        "matviews": _matviews(conn, full_below),
        "sequences": sequences,
        "objects": {kind: _names(conn, kind) for kind in _OBJECT_QUERIES},
        "database_acl": _database_acl(conn),
        "large_objects": int(_scalar(conn, "SELECT count(*) FROM pg_largeobject_metadata")),
    }


def _scalar(conn: psycopg.Connection, query: Any, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _text_settings(conn: psycopg.Connection) -> dict[str, str]:
    """Settings that change ``row::text`` and therefore every checksum."""
    return {
        name: str(_scalar(conn, "SELECT current_setting(%s)", (name,))) for name in TEXT_SETTINGS
    }


def _full(conn: psycopg.Connection, ident: sql.Composable) -> tuple[int, str]:
    """Row count and content hash of every row: the method of ``checksums.table_checksums``."""
    return table_checksum(conn, ident)


def _primary_key(conn: psycopg.Connection, regclass: str) -> list[tuple[str, str]]:
    """(column, type) of the table's primary key, in key order; [] without one."""
    rows = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, NULL)
        FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = %s::regclass AND i.indisprimary
        ORDER BY array_position(i.indkey::int2[], a.attnum)
        """,
        (regclass,),
    ).fetchall()
    return [(str(name), str(typ)) for name, typ in rows]


def _table(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    full_below: int,
    sample_rows: int,
    hint: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One table's entry: rows, size, and a full or sampled content checksum."""
    ident = sql.Identifier(schema, table)
    regclass = ident.as_string(conn)
    size = int(_scalar(conn, "SELECT pg_table_size(%s::regclass)", (regclass,)))
    key = _primary_key(conn, regclass)
    spec, reason = _choose(hint, size, full_below, key, sample_rows)
    if spec is None:
        rows, checksum = _full(conn, ident)
        entry: dict[str, Any] = {
            "rows": rows,
            "bytes": size,
            "method": "full",
            "checksum": checksum,
        }
        if reason:
            entry["reason"] = reason
        return entry
    rows = int(_scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(ident)))
    sample, checksum = _sample(conn, ident, spec, rows, sample_rows)
    return {"rows": rows, "bytes": size, "method": "sample", "checksum": checksum, "sample": sample}


def _choose(
    hint: Mapping[str, Any] | None,
    size: int,
    full_below: int,
    key: list[tuple[str, str]],
    sample_rows: int,
) -> tuple[dict[str, Any] | None, str | None]:
    """The sample to take (None: hash every row) and, for a large table hashed in full, why."""
    names = [name for name, _ in key]
    if hint is not None and hint.get("method") == "full":
        return None, None
    if hint is not None and hint.get("method") == "sample":
        wanted = dict(hint.get("sample") or {})
        if wanted.get("key") == names:
            return {k: v for k, v in wanted.items() if k not in ("bounds", "rows")}, None
    if size < full_below:
        return None, None
    if not key:
        return None, "no primary key to sample by"
    if len(key) == 1 and key[0][1] in _INTEGER_TYPES:
        per_window = max(1, math.ceil(sample_rows / SAMPLE_WINDOWS))
        spec = {"by": "pk-ranges", "key": names, "windows": SAMPLE_WINDOWS}
        return {**spec, "rows_per_window": per_window}, None
    return {"by": "pk-hash", "key": names}, None


def _sample(
    conn: psycopg.Connection,
    ident: sql.Identifier,
    spec: dict[str, Any],
    rows: int,
    sample_rows: int,
) -> tuple[dict[str, Any], str]:
    """Hash the rows ``spec`` picks; the returned sample records how and how many."""
    if spec["by"] == "pk-ranges":
        return _sample_ranges(conn, ident, spec)
    return _sample_hash(conn, ident, spec, rows, sample_rows)


def _windows(low: int, high: int, count: int) -> list[list[int]]:
    """``count`` equal, inclusive ``[lo, hi]`` windows over ``[low, high]`` (empty ones dropped)."""
    span = high - low + 1
    edges = [low + span * i // count for i in range(count + 1)]
    return [[lo, hi - 1] for lo, hi in itertools.pairwise(edges) if lo <= hi - 1]


def _sample_ranges(
    conn: psycopg.Connection, ident: sql.Identifier, spec: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """The first rows (in key order) of equal windows over the integer key's span."""
    key = sql.Identifier(spec["key"][0])
    span = conn.execute(sql.SQL("SELECT min({k}), max({k}) FROM {t}").format(k=key, t=ident))
    low, high = span.fetchone() or (None, None)
    bounds = [] if low is None else _windows(int(low), int(high), int(spec["windows"]))
    query = sql.SQL(
        """
        SELECT count(*), coalesce(sum(hashtextextended(s.r::text, 0)), 0)::text
        FROM unnest(%s::bigint[], %s::bigint[]) AS w(lo, hi)
        CROSS JOIN LATERAL (
            SELECT ROW(t.*) AS r FROM {t} t WHERE t.{k} BETWEEN w.lo AND w.hi ORDER BY t.{k} LIMIT %s
        ) s
        """
    ).format(t=ident, k=key)
    los, his = [b[0] for b in bounds], [b[1] for b in bounds]
    row = conn.execute(query, (los, his, int(spec["rows_per_window"]))).fetchone()
    assert row is not None
    return {**spec, "bounds": bounds, "rows": int(row[0])}, str(row[1])


def _sample_hash(
    conn: psycopg.Connection,
    ident: sql.Identifier,
    spec: dict[str, Any],
    rows: int,
    sample_rows: int,
) -> tuple[dict[str, Any], str]:
    """Rows whose key hashes to 0 modulo ``ceil(rows / sample_rows)``: chosen by content only."""
    modulus = int(spec.get("modulus") or max(1, math.ceil(rows / sample_rows)))
    key = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in spec["key"])
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(hashtextextended(ROW(t.*)::text, 0)), 0)::text FROM {t} t "
        "WHERE hashtextextended(ROW({key})::text, 0) %% %s = 0"
    ).format(t=ident, key=key)
    row = conn.execute(query, (modulus,)).fetchone()
    assert row is not None
    return {**spec, "modulus": modulus, "rows": int(row[0])}, str(row[1])


def _matviews(conn: psycopg.Connection, full_below: int) -> dict[str, dict[str, Any]]:
    """Each matview's rows and checksum (count only when large; nothing when unpopulated)."""
    listed = conn.execute(
        "SELECT n.nspname, c.relname, c.relispopulated, pg_table_size(c.oid) FROM pg_class c "
        f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' AND {_USER_NS}"
    ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for schema, name, populated, size in sorted(listed):
        entry: dict[str, Any] = {"populated": bool(populated), "rows": None, "checksum": None}
        ident = sql.Identifier(schema, name)
        if populated and size < full_below:
            entry["rows"], entry["checksum"] = _full(conn, ident)
        elif populated:
            entry["rows"] = int(_scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(ident)))
        out[f"{schema}.{name}"] = entry
    return out


def _sequences(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """``last_value``/``is_called`` read from each sequence, as pg_dump reads them for setval."""
    listed = conn.execute(
        "SELECT n.nspname, c.relname, s.seqincrement FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid "
        f"WHERE c.relkind = 'S' AND {_USER_NS}"
    ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for schema, name, increment in sorted(listed):
        query = sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))
        row = conn.execute(query).fetchone()
        assert row is not None
        out[f"{schema}.{name}"] = {
            "last_value": int(row[0]),
            "is_called": bool(row[1]),
            "increment": int(increment),
        }
    return out


def _names(conn: psycopg.Connection, kind: str) -> list[str]:
    """Sorted names of one kind of object (sorted here: independent of the server's collation)."""
    query = _OBJECT_QUERIES[kind].replace("{ns}", _USER_NS)
    return sorted(str(row[0]) for row in conn.execute(query).fetchall())


def _database_acl(conn: psycopg.Connection) -> dict[str, Any]:
    """``datacl`` as text (None: the owner's default), the default, and the grants it means."""
    row = conn.execute(
        """
        SELECT pg_get_userbyid(d.datdba), d.datacl::text, acldefault('d', d.datdba)::text,
               ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)
                            END || '=' || a.privilege_type
                            || CASE WHEN a.is_grantable THEN '*' ELSE '' END
                            || '/' || pg_get_userbyid(a.grantor)
                     FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a)
        FROM pg_database d WHERE d.datname = current_database()
        """
    ).fetchone()
    assert row is not None
    return {"owner": row[0], "acl": row[1], "default": row[2], "effective": sorted(row[3])}


# ------------------------------------------------------------------ comparing


@dataclass
class FingerprintReport:
    """What was compared, what differs (``problems``), and what a restore changes by design."""

    ok: bool = True
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    expected_differences: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report for people, one fact per line, secrets masked."""
        out = [f"deep verify: {'OK' if self.ok else 'PROBLEMS FOUND'}"]
        out += [f"checked: {line}" for line in self.checked]
        out += [f"problem: {line}" for line in self.problems]
        out += [f"expected difference: {line}" for line in self.expected_differences]
        return [redact(line) for line in out]


Check = Callable[[Mapping[str, Any], Mapping[str, Any], FingerprintReport], None]


def compare_fingerprints(
    expected: Mapping[str, Any], actual: Mapping[str, Any]
) -> FingerprintReport:
    """Compare the fingerprint taken before a dump (``expected``) with one taken after a restore."""
    report = FingerprintReport()
    for check in _CHECKS:
        check(expected, actual, report)
    report.ok = not report.problems
    return report


def _check_format(e: Mapping[str, Any], a: Mapping[str, Any], report: FingerprintReport) -> None:
    for side, fp in (("expected", e), ("actual", a)):
        if fp.get("format") != FORMAT:
            report.problems.append(
                f"the {side} fingerprint has format {fp.get('format')!r}; this rollbot reads {FORMAT}"
            )


def _check_settings(e: Mapping[str, Any], a: Mapping[str, Any], report: FingerprintReport) -> None:
    """Checksums hash ``row::text``, which the time zone, date style etc. change."""
    before, after = e.get("text_settings") or {}, a.get("text_settings") or {}
    diffs = [
        f"{name} {before.get(name)!r} expected, {after.get(name)!r} actual"
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    ]
    if diffs:
        report.problems.append(
            "settings that shape row text differ, so content checksums are not comparable: "
            + "; ".join(diffs)
        )


def _describe_sample(sample: Mapping[str, Any]) -> str:
    key = ", ".join(sample.get("key") or [])
    if sample.get("by") == "pk-ranges":
        return (
            f"pk-ranges on ({key}): {sample.get('windows')} windows of up to "
            f"{sample.get('rows_per_window')} rows, {sample.get('rows')} rows hashed"
        )
    return f"pk-hash on ({key}): 1 row in {sample.get('modulus')}, {sample.get('rows')} rows hashed"


def _method(entry: Mapping[str, Any]) -> str:
    if entry.get("method") == "sample":
        return "by sample, " + _describe_sample(entry.get("sample") or {})
    return "in full"


def _spec(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """How the checksum was taken, without what it found: equal specs make checksums comparable."""
    sample = entry.get("sample") or {}
    params = sorted((k, str(v)) for k, v in sample.items() if k not in ("bounds", "rows"))
    return (entry.get("method"), *params)


def _table_problem(
    name: str, e: Mapping[str, Any] | None, a: Mapping[str, Any] | None
) -> str | None:
    """One line naming what differs for table ``name``, or None when it matches."""
    if a is None:
        return f"table {name}: expected ({(e or {}).get('rows')} rows), missing from actual"
    if e is None:
        return f"table {name}: not expected, present in actual ({a.get('rows')} rows)"
    if e.get("rows") != a.get("rows"):
        return f"table {name}: {e.get('rows')} rows expected, {a.get('rows')} actual"
    if _spec(e) != _spec(a):
        return (
            f"table {name}: content not comparable: checksummed {_method(e)} in expected, "
            f"{_method(a)} in actual (take the actual fingerprint with like=expected)"
        )
    if e.get("checksum") == a.get("checksum"):
        return None
    what = "every row" if e.get("method") == "full" else "the sampled rows"
    return (
        f"table {name}: same {a.get('rows')} rows but the content differs: checksum of {what} "
        f"{e.get('checksum')} expected, {a.get('checksum')} actual"
    )


def _check_tables(e: Mapping[str, Any], a: Mapping[str, Any], report: FingerprintReport) -> None:
    before, after = e.get("tables") or {}, a.get("tables") or {}
    full = sum(1 for t in before.values() if t.get("method") == "full")
    report.checked.append(
        f"{len(before)} tables: row counts and content checksums "
        f"({full} full, {len(before) - full} sampled)"
    )
    sampled = [
        f"{name} by {_describe_sample(t.get('sample') or {})}"
        for name, t in sorted(before.items())
        if t.get("method") == "sample"
    ]
    if sampled:
        threshold = e.get("full_below_bytes")
        report.checked.append(
            f"sampled (tables of {threshold} bytes or more): " + "; ".join(sampled)
        )
    unsampled = [f"{name} ({t['reason']})" for name, t in sorted(before.items()) if t.get("reason")]
    if unsampled:
        report.checked.append("hashed in full despite their size: " + "; ".join(unsampled))
    for name in sorted(before.keys() | after.keys()):
        line = _table_problem(name, before.get(name), after.get(name))
        if line:
            report.problems.append(line)


def _check_matviews(e: Mapping[str, Any], a: Mapping[str, Any], report: FingerprintReport) -> None:
    """A restore refreshes matviews: new content is expected; losing the data is not."""
    before, after = e.get("matviews") or {}, a.get("matviews") or {}
    report.checked.append(
        f"{len(before)} matviews: contents (a restore refreshes them: a difference is expected)"
    )
    for name in sorted(before.keys() & after.keys()):
        x, y = before[name], after[name]
        if x.get("populated") != y.get("populated"):
            state = {True: "populated", False: "not populated"}
            report.problems.append(
                f"matview {name}: {state[bool(x.get('populated'))]} expected, "
                f"{state[bool(y.get('populated'))]} actual"
            )
            continue
        sums = (x.get("checksum"), y.get("checksum"))
        if x.get("rows") != y.get("rows") or (None not in sums and sums[0] != sums[1]):
            report.expected_differences.append(
                f"matview {name}: content differs ({x.get('rows')} rows expected, "
                f"{y.get('rows')} rows actual): a restore refreshes it from its tables"
            )


def _next_value(seq: Mapping[str, Any]) -> int:
    """What ``nextval`` would return (``setval(.., false)`` hands out ``last_value`` itself)."""
    last = int(seq["last_value"])
    return last + int(seq.get("increment", 1)) if seq.get("is_called") else last


def _sequence_state(seq: Mapping[str, Any]) -> str:
    return (
        f"last_value {seq.get('last_value')} (is_called {str(bool(seq.get('is_called'))).lower()})"
    )


def _compare_sequence(
    name: str, x: Mapping[str, Any], y: Mapping[str, Any], report: FingerprintReport
) -> None:
    """Compare by the value ``nextval`` would hand out next, which is what matters.

    pg_dump restores a sequence with ``setval(last_value, is_called)``, so on a quiet
    database the two match exactly. Sequences are not transactional, though: on a live
    database ``nextval`` calls between this fingerprint's read and pg_dump's move the
    restored one ahead. Ahead only skips values (expected); behind would hand out
    values already used (a problem). ``(5, called)`` and ``(6, not called)`` are the
    same position.
    """
    if (x.get("last_value"), x.get("is_called")) == (y.get("last_value"), y.get("is_called")):
        return
    states = f"{_sequence_state(x)} expected, {_sequence_state(y)} actual"
    want, got = _next_value(x), _next_value(y)
    if want == got:
        report.expected_differences.append(f"sequence {name}: {states}: both hand out {got} next")
        return
    ahead = (got - want) * (1 if int(x.get("increment", 1)) > 0 else -1) > 0
    if ahead:
        report.expected_differences.append(
            f"sequence {name}: {states}: hands out {got} next instead of {want}, values are "
            "skipped, none reused (nextval calls while the dump ran move sequences ahead)"
        )
        return
    report.problems.append(
        f"sequence {name}: {states}: would hand out {got} next instead of {want}, "
        "values already used would come again"
    )


def _check_sequences(e: Mapping[str, Any], a: Mapping[str, Any], report: FingerprintReport) -> None:
    before, after = e.get("sequences") or {}, a.get("sequences") or {}
    report.checked.append(f"{len(before)} sequences: last values")
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            state = _sequence_state(before[name])
            report.problems.append(f"sequence {name}: expected ({state}), missing from actual")
        elif name not in before:
            state = _sequence_state(after[name])
            report.problems.append(f"sequence {name}: not expected, present in actual ({state})")
        else:
            _compare_sequence(name, before[name], after[name], report)


def _check_objects(e: Mapping[str, Any], a: Mapping[str, Any], report: FingerprintReport) -> None:
    before, after = e.get("objects") or {}, a.get("objects") or {}
    kinds = [*_OBJECT_QUERIES, *sorted((before.keys() | after.keys()) - _OBJECT_QUERIES.keys())]
    report.checked.append(", ".join(f"{k} {len(before.get(k) or [])}" for k in kinds) + ": names")
    for kind in kinds:
        x, y = set(before.get(kind) or []), set(after.get(kind) or [])
        label, counts = _SINGULAR.get(kind, kind), f"{len(x)} {kind} expected, {len(y)} actual"
        for name in sorted(x - y):
            report.problems.append(f"{label} {name}: expected, missing from actual ({counts})")
        for name in sorted(y - x):
            report.problems.append(f"{label} {name}: not expected, present in actual ({counts})")


def _acl_text(acl: Mapping[str, Any]) -> str:
    return acl["acl"] if acl.get("acl") is not None else f"NULL (the default, {acl.get('default')})"


def _check_acl(e: Mapping[str, Any], a: Mapping[str, Any], report: FingerprintReport) -> None:
    """NULL is the owner's default: an explicit ACL equal to it grants the same."""
    x, y = e.get("database_acl") or {}, a.get("database_acl") or {}
    report.checked.append("database ACL")
    if x.get("acl") == y.get("acl"):
        return
    both = f"{_acl_text(x)} expected, {_acl_text(y)} actual"
    if x.get("effective") == y.get("effective"):
        report.expected_differences.append(f"database ACL: {both}: the same privileges")
    else:
        report.problems.append(f"database ACL: {both}")


def _check_large_objects(
    e: Mapping[str, Any], a: Mapping[str, Any], report: FingerprintReport
) -> None:
    report.checked.append("large objects: count")
    if e.get("large_objects") != a.get("large_objects"):
        report.problems.append(
            f"large objects: {e.get('large_objects')} expected, {a.get('large_objects')} actual"
        )


_CHECKS: tuple[Check, ...] = (
    _check_format,
    _check_settings,
    _check_tables,
    _check_matviews,
    _check_sequences,
    _check_objects,
    _check_acl,
    _check_large_objects,
)
