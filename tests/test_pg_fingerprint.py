"""Deep verify: a fingerprint taken before pg_dump matches the restored copy and names what differs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from providers.postgres.checksums import table_checksums
from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.conn import dbname
from providers.postgres.fingerprint import FingerprintReport, compare_fingerprints, take_fingerprint
from providers.postgres.tools import child_env, find_client_tools

pytestmark = pytest.mark.postgres

SCHEMA = """
CREATE TABLE customers (id serial PRIMARY KEY, email text NOT NULL UNIQUE,
                        score numeric CHECK (score >= 0), touched timestamptz);
CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, customer int REFERENCES customers(id),
                     kind text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX events_kind ON events (kind);
CREATE SEQUENCE invoice_no START 1000;
CREATE FUNCTION add_one(n integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT n + 1';
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN NEW.touched := now(); RETURN NEW; END $$;
CREATE TRIGGER customers_touch BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION touch();
CREATE VIEW big_spenders AS SELECT * FROM customers WHERE score > 50;
INSERT INTO customers (email, score) SELECT 'c' || i || '@example.com', i % 97
    FROM generate_series(1, 200) i;
INSERT INTO events SELECT i, date '2024-06-01' + (i % 400), 1 + i % 200, 'k' || (i % 5)
    FROM generate_series(1, 600) i;
SELECT nextval('invoice_no') FROM generate_series(1, 3);
CREATE MATERIALIZED VIEW kinds AS SELECT kind, count(*) AS n FROM events GROUP BY kind;
INSERT INTO events VALUES (601, '2025-03-01', 1, 'late');  -- kinds is stale from here on
"""

SAMPLED = """
CREATE TABLE readings (id int PRIMARY KEY, v text);
CREATE TABLE codes (code text PRIMARY KEY, n int);
CREATE TABLE log (line text);
INSERT INTO readings SELECT i, md5(i::text) FROM generate_series(1, 3000) i;
INSERT INTO codes SELECT 'code-' || i, i FROM generate_series(1, 500) i;
INSERT INTO log SELECT 'line ' || i FROM generate_series(1, 50) i;
UPDATE readings SET v = v || '' WHERE id % 2 = 0;  -- heap order is no longer key order
"""

Restore = Callable[..., str]


def run_sql(url: str, statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statements)


def fingerprint(url: str, **kwargs: Any) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        return take_fingerprint(conn, **kwargs)


def build(url: str) -> None:
    """Every kind of object, one table partitioned, and strangers kept out."""
    run_sql(url, SCHEMA)
    run_sql(url, f'REVOKE CONNECT ON DATABASE "{dbname(url)}" FROM PUBLIC')


@pytest.fixture
def restore_copy(
    pg_cluster: ThrowawayCluster, new_database: Callable[[str], str], tmp_path: Path
) -> Restore:
    """``pg_dump -Fc`` a database and ``pg_restore`` it into a new one; the copy's URL."""
    tools = find_client_tools(pg_cluster.major_version)

    def restore(url: str, *, snapshot: str | None = None) -> str:
        dump = tmp_path / f"{dbname(url)}.dump"
        safe, env = child_env(url)
        extra = [f"--snapshot={snapshot}"] if snapshot else []
        argv = [str(tools.pg_dump), "-Fc", *extra, "-f", str(dump), "-d", safe]
        subprocess.run(argv, env=env, check=True, capture_output=True)
        copy = new_database(f"{dbname(url)}_copy")
        safe, env = child_env(copy)
        argv = [str(tools.pg_restore), "--exit-on-error", "-d", safe, str(dump)]
        subprocess.run(argv, env=env, check=True, capture_output=True)
        return copy

    return restore


def keep_strangers_out(url: str) -> None:
    """What a restore does after pg_restore: a dump does not carry the database's own ACL."""
    run_sql(url, f'REVOKE CONNECT ON DATABASE "{dbname(url)}" FROM PUBLIC')


def mentions(lines: list[str], *words: str) -> list[str]:
    return [line for line in lines if all(w in line for w in words)]


def test_restored_copy_matches_and_a_refreshed_matview_is_expected(
    pg_url: str, restore_copy: Restore
) -> None:
    build(pg_url)
    before = json.loads(json.dumps(fingerprint(pg_url)))  # as a manifest stores it
    copy = restore_copy(pg_url)

    no_acl = compare_fingerprints(before, fingerprint(copy))
    assert mentions(no_acl.problems, "database ACL") == no_acl.problems != []

    keep_strangers_out(copy)
    report = compare_fingerprints(before, fingerprint(copy))

    assert report.ok, report.lines()
    assert len(report.expected_differences) == 1
    assert mentions(report.expected_differences, "matview public.kinds", "5 rows", "6 rows")
    tables = before["tables"]
    assert {"public.events_2024", "public.events_2025", "public.customers"} <= tables.keys()
    assert "public.events" not in tables  # a partitioned parent holds no rows itself
    assert tables["public.customers"]["rows"] == 200
    assert before["sequences"]["public.invoice_no"] == {
        "last_value": 1002,
        "is_called": True,
        "increment": 1,
    }
    objects = before["objects"]
    assert "public.add_one(n integer)" not in objects["functions"]
    assert "public.add_one(integer)" in objects["functions"]
    assert "public.customers: customers_touch" in objects["triggers"]
    assert objects["views"] == ["public.big_spenders"]
    assert objects["matviews"] == ["public.kinds"]
    assert "public.events_kind" in objects["indexes"]
    assert "public.customers: customers_score_check" in objects["constraints"]
    assert "PUBLIC=CONNECT" not in " ".join(before["database_acl"]["effective"])
    assert mentions(report.checked, "tables: row counts and content checksums", "full, 0 sampled")
    assert mentions(report.checked, "functions 2, triggers 1, views 1, matviews 1")
    assert "database ACL" in report.checked
    assert report.lines()[0] == "deep verify: OK"


def test_a_fresh_matview_is_not_reported(pg_url: str, restore_copy: Restore) -> None:
    build(pg_url)
    run_sql(pg_url, "REFRESH MATERIALIZED VIEW kinds")
    before = fingerprint(pg_url)
    copy = restore_copy(pg_url)
    keep_strangers_out(copy)

    report = compare_fingerprints(before, fingerprint(copy))

    assert report.ok, report.lines()
    assert report.expected_differences == []


def test_one_tampered_row_names_its_table(pg_url: str, restore_copy: Restore) -> None:
    build(pg_url)
    before = fingerprint(pg_url)
    copy = restore_copy(pg_url)
    keep_strangers_out(copy)
    run_sql(copy, "UPDATE events_2024 SET kind = 'tampered' WHERE id = 7")

    report = compare_fingerprints(before, fingerprint(copy))

    assert not report.ok
    assert len(report.problems) == 1
    (problem,) = report.problems
    assert problem.startswith("table public.events_2024: same ")
    assert before["tables"]["public.events_2024"]["checksum"] in problem
    assert "PROBLEMS FOUND" in report.lines()[0]


def test_a_dropped_function_and_a_rewound_sequence_are_named(
    pg_url: str, restore_copy: Restore
) -> None:
    build(pg_url)
    before = fingerprint(pg_url)
    copy = restore_copy(pg_url)
    keep_strangers_out(copy)
    run_sql(copy, "DROP FUNCTION add_one(integer); SELECT setval('invoice_no', 900)")

    report = compare_fingerprints(before, fingerprint(copy))

    assert not report.ok
    assert mentions(report.problems, "function public.add_one(integer)", "missing from actual")
    (seq,) = mentions(report.problems, "sequence public.invoice_no")
    assert (
        "last_value 1002" in seq and "last_value 900" in seq and "901 next instead of 1003" in seq
    )
    assert len(report.problems) == 2


def test_sequence_positions_compare_by_the_next_value(pg_url: str) -> None:
    """(1002, called) and (1003, not called) hand out the same value; ahead only skips values."""
    build(pg_url)
    before = fingerprint(pg_url)

    run_sql(pg_url, "SELECT setval('invoice_no', 1003, false)")
    same = compare_fingerprints(before, fingerprint(pg_url))
    assert same.ok, same.lines()
    assert mentions(same.expected_differences, "sequence public.invoice_no", "1003 next")

    run_sql(pg_url, "SELECT setval('invoice_no', 1500)")
    ahead = compare_fingerprints(before, fingerprint(pg_url))
    assert ahead.ok, ahead.lines()
    assert mentions(ahead.expected_differences, "public.invoice_no", "1501 next", "skipped")


def test_large_tables_are_sampled_by_key_and_a_changed_sampled_row_is_found(
    pg_url: str, restore_copy: Restore
) -> None:
    run_sql(pg_url, SAMPLED)
    tiny = {"full_below_bytes": 1, "sample_rows": 160}
    before = fingerprint(pg_url, **tiny)
    copy = restore_copy(pg_url)
    after = fingerprint(copy, **tiny)

    report = compare_fingerprints(before, after)

    assert report.ok, report.lines()
    readings, codes = before["tables"]["public.readings"], before["tables"]["public.codes"]
    assert readings["method"] == codes["method"] == "sample"
    assert readings["sample"]["by"] == "pk-ranges" and readings["sample"]["rows"] == 160
    assert codes["sample"] == {**codes["sample"], "by": "pk-hash", "modulus": 4}
    assert before["tables"]["public.log"]["reason"] == "no primary key to sample by"
    assert mentions(report.checked, "3 tables", "(1 full, 2 sampled)")
    assert mentions(report.checked, "public.readings by pk-ranges on (id): 16 windows")
    assert mentions(report.checked, "public.codes by pk-hash on (code): 1 row in 4")

    run_sql(
        copy, "UPDATE readings SET v = 'not sampled' WHERE id = 11"
    )  # window 1..187, rows 1..10
    assert compare_fingerprints(before, fingerprint(copy, **tiny)).ok  # what a sample cannot see

    run_sql(copy, "UPDATE readings SET v = 'tampered' WHERE id = 1")
    run_sql(
        copy,
        "UPDATE codes SET n = -1 WHERE code = (SELECT min(code) FROM codes "
        "WHERE hashtextextended(ROW(code)::text, 0) % 4 = 0)",
    )
    tampered = compare_fingerprints(before, fingerprint(copy, **tiny))
    assert not tampered.ok
    assert [p.split(":")[0] for p in tampered.problems] == [
        "table public.codes",
        "table public.readings",
    ]


def test_like_repeats_the_methods_when_a_size_crossed_the_threshold(
    pg_url: str, restore_copy: Restore
) -> None:
    """A restored table has no bloat: the size rule alone may hash it in full on one side only."""
    run_sql(pg_url, SAMPLED)
    before = fingerprint(pg_url, full_below_bytes=1, sample_rows=160)
    copy = restore_copy(pg_url)

    unlike = compare_fingerprints(before, fingerprint(copy))
    assert mentions(unlike.problems, "table public.readings: content not comparable", "in full")

    report = compare_fingerprints(before, fingerprint(copy, like=before))
    assert report.ok, report.lines()


def test_an_explicit_default_acl_equals_null(pg_url: str) -> None:
    before = fingerprint(pg_url)
    db = dbname(pg_url)
    run_sql(pg_url, f'REVOKE CONNECT ON DATABASE "{db}" FROM PUBLIC')
    run_sql(pg_url, f'GRANT CONNECT ON DATABASE "{db}" TO PUBLIC')
    after = fingerprint(pg_url)
    assert before["database_acl"]["acl"] is None
    assert after["database_acl"]["acl"] == after["database_acl"]["default"]

    report = compare_fingerprints(after, before)

    assert report.ok, report.lines()
    assert mentions(report.expected_differences, "database ACL", "NULL (the default", "same")


def test_taken_inside_the_dump_snapshot_and_left_open(pg_url: str, restore_copy: Restore) -> None:
    """In the transaction whose snapshot pg_dump uses, rows written meanwhile are in neither."""
    build(pg_url)
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        exported = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert exported is not None
        run_sql(pg_url, "INSERT INTO customers (email) VALUES ('late@example.com')")
        before = take_fingerprint(conn)
        assert conn.info.transaction_status == TransactionStatus.INTRANS
        run_sql(pg_url, "INSERT INTO customers (email) VALUES ('later@example.com')")
        copy = restore_copy(pg_url, snapshot=exported[0])
    keep_strangers_out(copy)

    report = compare_fingerprints(before, fingerprint(copy))

    assert before["tables"]["public.customers"]["rows"] == 200
    assert report.ok, report.lines()
    assert mentions(report.expected_differences, "sequence public.customers_id_seq", "skipped")


def test_full_checksums_are_those_of_table_checksums(pg_url: str) -> None:
    build(pg_url)
    fp = fingerprint(pg_url)
    with psycopg.connect(pg_url) as conn:
        plain = table_checksums(conn, None)
    assert {name: (t["rows"], t["checksum"]) for name, t in fp["tables"].items()} == plain


def test_a_column_named_t_does_not_hide_the_rest_of_the_row(pg_url: str) -> None:
    run_sql(
        pg_url,
        "CREATE TABLE shadow (id int PRIMARY KEY, t text); INSERT INTO shadow VALUES (1, 'a')",
    )
    for kwargs in ({}, {"full_below_bytes": 1}):
        before = fingerprint(pg_url, **kwargs)
        run_sql(pg_url, "UPDATE shadow SET id = id + 1")
        report = compare_fingerprints(before, fingerprint(pg_url, **kwargs))
        assert mentions(report.problems, "table public.shadow", "content differs"), kwargs


def test_report_lines() -> None:
    report = FingerprintReport(ok=False, checked=["x"], problems=["y"], expected_differences=["z"])
    assert report.lines() == [
        "deep verify: PROBLEMS FOUND",
        "checked: x",
        "problem: y",
        "expected difference: z",
    ]
