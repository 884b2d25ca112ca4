"""Verification on a real PostgreSQL against a tiny drizzle folder."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from bot.errors import ProviderError
from bot.redact import redact
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.verify import tracking_identifiers, verify_database

pytestmark = pytest.mark.postgres

MIGRATIONS = {
    "0000_users": 'CREATE TABLE "users" ("id" serial PRIMARY KEY, "email" text NOT NULL);'
    "--> statement-breakpoint\n"
    "INSERT INTO users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 25) g;",
    "0001_posts": 'CREATE TABLE "posts" ("id" serial PRIMARY KEY, "user_id" int);'
    "--> statement-breakpoint\nINSERT INTO posts (user_id) VALUES (1), (2), (3);",
    "0002_new_column": 'ALTER TABLE "users" ADD COLUMN "new_column" varchar(100);',
}


def make_folder(root: Path, files: dict[str, str]) -> Path:
    (root / "meta").mkdir(parents=True, exist_ok=True)
    entries = [
        {"idx": i, "version": "7", "when": 1700000000000 + i, "tag": tag, "breakpoints": True}
        for i, tag in enumerate(files)
    ]
    (root / "meta" / "_journal.json").write_text(
        json.dumps({"version": "7", "dialect": "postgresql", "entries": entries})
    )
    for tag, text in files.items():
        (root / f"{tag}.sql").write_text(text)
    return root


def test_missing_tracking_table_is_a_finding(pg_url: str, tmp_path: Path) -> None:
    journal = read_journal(make_folder(tmp_path, MIGRATIONS))
    report = verify_database(pg_url, journal=journal)
    assert not report.ok
    assert not report.table_found
    assert any(
        "migrations table drizzle.__drizzle_migrations does not exist" in p for p in report.problems
    )
    assert "PROBLEMS FOUND" in report.lines()[0]


def test_missing_tracking_table_without_journal_is_a_warning(pg_url: str) -> None:
    report = verify_database(pg_url)
    assert report.ok and not report.table_found
    assert report.problems == []
    assert any(
        line.startswith("warning: migrations table drizzle.__drizzle_migrations does not exist")
        for line in report.lines()
    )


def test_head_matches_after_full_migration(pg_url: str, tmp_path: Path) -> None:
    journal = read_journal(make_folder(tmp_path, MIGRATIONS))
    apply_migrations(pg_url, journal)
    report = verify_database(pg_url, journal=journal, smoke_queries=["SELECT count(*) FROM users"])
    assert report.ok, report.problems
    assert report.head_matches
    assert [r.tag for r in report.recent] == ["0002_new_column", "0001_posts", "0000_users"]
    assert report.pending == []
    assert dict(report.table_rows)["users"] == 25
    assert dict(report.table_rows)["posts"] == 3
    assert "drizzle.__drizzle_migrations" in dict(report.table_rows)
    assert report.smoke[0].ok and report.smoke[0].detail == "25"
    text = "\n".join(report.lines())
    assert "OK" in report.lines()[0] and "head matches the expected 0002_new_column" in text


def test_head_mismatch_and_pending(pg_url: str, tmp_path: Path) -> None:
    journal = read_journal(make_folder(tmp_path, MIGRATIONS))
    apply_migrations(pg_url, journal, upto=1)
    report = verify_database(pg_url, journal=journal)
    assert not report.ok
    assert report.head_matches is False
    assert report.pending == ["0002_new_column"]
    assert (
        "head mismatch: newest applied is 0001_posts, expected 0002_new_column" in report.problems
    )
    # After restoring to the pre-migration state this is exactly what we expect.
    restored = verify_database(pg_url, journal=journal, expected_head="0001_posts")
    assert restored.ok, restored.problems
    assert restored.pending == ["0002_new_column"]


def test_rows_not_in_journal_and_edited_files(pg_url: str, tmp_path: Path) -> None:
    folder = make_folder(tmp_path, MIGRATIONS)
    journal = read_journal(folder)
    apply_migrations(pg_url, journal)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('abc', 1800000000000)"
        )
    (folder / "0001_posts.sql").write_text(MIGRATIONS["0001_posts"] + "\n-- edited\n")
    report = verify_database(pg_url, journal=read_journal(folder))
    problems = "\n".join(report.problems)
    assert "applied migration id 4 (created_at 1800000000000" in problems
    assert "0001_posts.sql was edited after it was applied" in problems
    assert "head mismatch: newest applied is id 4" in problems
    assert report.recent[0].tag is None


def test_unqualified_table_name_like_the_runbook(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE _drizzle_migrations (id serial PRIMARY KEY, hash text, created_at bigint);"
            "INSERT INTO _drizzle_migrations (hash, created_at) "
            "SELECT md5(g::text), g FROM generate_series(1, 8) g"
        )
    report = verify_database(pg_url, migrations_table="_drizzle_migrations")
    assert report.ok, report.problems
    assert report.applied_count == 8
    assert [r.id for r in report.recent] == [8, 7, 6, 5, 4]


def test_hostile_table_name_is_quoted(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id int)")
    report = verify_database(pg_url, migrations_table='x"; DROP TABLE users; --')
    assert not report.table_found
    assert "does not exist" in report.warnings[0]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('users')").fetchone()[0] is not None
    with pytest.raises(ProviderError, match="must look like"):
        tracking_identifiers("a.b.c")


def test_smoke_queries_are_read_only_and_time_limited(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
    report = verify_database(
        pg_url,
        migrations_table="_none",
        smoke_queries=[
            "SELECT true",
            "SELECT false",
            "INSERT INTO t VALUES (1)",
            "SELECT pg_sleep(5)",
            "SELECT * FROM missing_table",
        ],
        timeout_seconds=0.5,
    )
    results = {s.query: s for s in report.smoke}
    assert results["SELECT true"].ok
    assert not results["SELECT false"].ok
    assert "read-only transaction" in results["INSERT INTO t VALUES (1)"].detail
    # The server's "canceling statement due to statement timeout" is the proof the limit
    # applied; how long that took is no test's business (a busy machine stretches it).
    assert not results["SELECT pg_sleep(5)"].ok
    assert "statement timeout" in results["SELECT pg_sleep(5)"].detail
    assert "missing_table" in results["SELECT * FROM missing_table"].detail
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert sum("smoke query failed" in p for p in report.problems) == 4


def test_password_never_in_report(pg_cluster: ThrowawayCluster, pg_url: str) -> None:
    report = verify_database(pg_url, smoke_queries=["SELECT current_setting('application_name')"])
    text = "\n".join(report.lines())
    assert pg_cluster.password not in text
    assert pg_cluster.password not in redact(report.database)


def test_unreachable_server_is_a_clear_error(pg_cluster: ThrowawayCluster) -> None:
    url = pg_cluster.url().replace(f":{pg_cluster.port}/", ":1/")
    with pytest.raises(ProviderError, match="cannot connect") as info:
        verify_database(url)
    assert pg_cluster.password not in str(info.value)


def test_bare_table_name_also_found_in_drizzle_schema(pg_url: str, tmp_path: Path) -> None:
    """drizzle (and our applier) put a bare ``migrationsTable`` in the ``drizzle`` schema."""
    journal = read_journal(make_folder(tmp_path, MIGRATIONS))
    apply_migrations(pg_url, journal, table="custom_migrations")
    report = verify_database(pg_url, migrations_table="custom_migrations", journal=journal)
    assert report.ok, report.problems
    assert report.applied_count == 3
