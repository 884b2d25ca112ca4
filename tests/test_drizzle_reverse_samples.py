"""Acceptance: apply 1..k, apply the drafted reverse of k, compare with 1..k-1 (real PostgreSQL)."""

import re
from pathlib import Path

import psycopg
import pytest

from bot.errors import ProviderError
from providers.drizzle.apply import apply_migrations, apply_sql
from providers.drizzle.journal import read_journal
from providers.drizzle.reverse import ReverseDraft, draft_reverse
from providers.drizzle.snapshot_model import from_catalog, previous_snapshot
from providers.postgres.catalog import describe_schema, diff_schemas
from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.conn import with_dbname

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "drizzle"
NAMES = sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def describe(url: str):
    with psycopg.connect(url) as conn:
        return describe_schema(conn, schemas=None)


def copy_database(cluster: ThrowawayCluster, source_url: str, name: str) -> str:
    """A copy of ``source_url``'s database (CREATE DATABASE ... TEMPLATE), fast and exact."""
    admin = with_dbname(source_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source_url.rsplit("/", 1)[1]}"')
    return with_dbname(source_url, name)


def unexplained(diffs: list[str], draft: ReverseDraft) -> list[str]:
    """Differences not covered by a statement the draft said needs a person."""
    names: set[str] = set()
    for n in draft.needs_person:
        names |= set(re.findall(r'"([^"]+)"', n.statement))
        names |= set(re.findall(r"'([^']+)'", n.statement))
    out = []
    for line in diffs:
        tokens = set(re.findall(r"[\w-]+", line))
        if not tokens & names:
            out.append(line)
    return out


def check_one(cluster: ThrowawayCluster, name: str, journal, entry, base: str) -> str | None:
    """None if the migration changed nothing; "" if its reverse restored 1..k-1; else the failure.

    The work copy is dropped afterwards: a sample checks dozens of entries, and every copy
    left behind would stay on disk until the session's cluster is removed.
    """
    work_name = f"rev_{entry.idx}_{name.split('__')[0].lower()}"
    work = copy_database(cluster, base, work_name)
    try:
        return reverse_problem(journal, entry, base, work)
    finally:
        cluster.drop_database(work_name)


def reverse_problem(journal, entry, base: str, work: str) -> str | None:
    """Apply 1..k to ``work`` (a copy of ``base`` at 1..k-1), then the drafted reverse of k."""
    before = describe(base)
    apply_migrations(work, journal, upto=entry.idx)
    changed = bool(diff_schemas(before, describe(work)))
    old = previous_snapshot(journal, entry) or from_catalog(before, "catalog of 1..k-1")
    draft = draft_reverse(journal, entry, before=old)
    try:
        apply_sql(work, draft.sql, f"reverse of {entry.tag}")
    except ProviderError as exc:
        return f"{entry.tag}: reverse failed to apply: {exc}\n{draft.render()}"
    rest = unexplained(diff_schemas(before, describe(work), ("1..k-1", "reversed")), draft)
    if rest:
        return f"{entry.tag}: {rest}\n{draft.render()}"
    return "" if changed else None


def check_reverse_of_every_entry(
    cluster: ThrowawayCluster, name: str, only: set[int] | None
) -> tuple[list[str], int]:
    """(failures, how many checked migrations changed the schema at all)."""
    journal = read_journal(SAMPLES / name)
    base_name = f"rev_{name.split('__')[0].lower()}_base"
    base = cluster.create_database(base_name)
    failures: list[str] = []
    changed = 0
    try:
        for entry in journal.entries:
            if only is None or entry.idx in only:
                problem = check_one(cluster, name, journal, entry, base)
                changed += problem is not None
                if problem:
                    failures.append(problem)
            apply_migrations(base, journal, upto=entry.idx)
    finally:
        cluster.drop_database(base_name)
    return failures, changed


@pytest.mark.parametrize("name", [n for n in NAMES if not n.startswith("Dokploy")])
def test_reverse_of_every_entry_restores_the_previous_schema(
    pg_cluster: ThrowawayCluster, name: str
) -> None:
    failures, changed = check_reverse_of_every_entry(pg_cluster, name, None)
    assert not failures, "\n\n".join(failures)
    assert changed >= len(read_journal(SAMPLES / name).entries) // 2  # the comparison has teeth


def test_reverse_of_dokploy_entries(pg_cluster: ThrowawayCluster) -> None:
    """The largest sample: the newest entries (snapshot available) and a spread of older ones."""
    journal = read_journal(SAMPLES / "Dokploy__dokploy")
    count = len(journal.entries)
    only = set(range(count - 12, count)) | set(range(0, count, 7))
    failures, changed = check_reverse_of_every_entry(pg_cluster, "Dokploy__dokploy", only)
    assert not failures, "\n\n".join(failures)
    assert changed >= len(only) // 2
