import json
from pathlib import Path

import psycopg
import pytest

from bot.errors import ProviderError
from providers.drizzle.apply import TrackingTable, apply_migrations
from providers.drizzle.journal import read_journal

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "drizzle"
pytestmark = pytest.mark.postgres


def make_folder(root: Path, files: dict[str, str], whens: dict[str, int] | None = None) -> Path:
    """A drizzle folder with the given ``tag -> sql`` in order."""
    (root / "meta").mkdir(parents=True, exist_ok=True)
    entries = [
        {
            "idx": i,
            "version": "7",
            "when": (whens or {}).get(tag, 1000 + i),
            "tag": tag,
            "breakpoints": True,
        }
        for i, tag in enumerate(files)
    ]
    (root / "meta" / "_journal.json").write_text(
        json.dumps({"version": "7", "dialect": "postgresql", "entries": entries})
    )
    for tag, text in files.items():
        (root / f"{tag}.sql").write_text(text)
    return root


def rows(url: str, table: str = "drizzle.__drizzle_migrations") -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT hash, created_at FROM {table} ORDER BY id").fetchall()


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.iterdir() if p.is_dir()))
def test_applies_every_sample(pg_url: str, name: str) -> None:
    journal = read_journal(SAMPLES / name)
    applied = apply_migrations(pg_url, journal)
    assert [e.tag for e in applied] == [e.tag for e in journal.entries]
    assert rows(pg_url) == [(e.hash, e.when) for e in journal.entries]
    assert apply_migrations(pg_url, journal) == []  # idempotent, like drizzle


def test_upto_then_rest(pg_url: str, tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path,
        {
            "0000_a": 'CREATE TABLE "a" ("id" int);',
            "0001_b": 'ALTER TABLE "a" ADD COLUMN "b" text;--> statement-breakpoint\nCREATE TABLE "c" ("id" int);',
        },
    )
    journal = read_journal(folder)
    assert [e.tag for e in apply_migrations(pg_url, journal, upto=0)] == ["0000_a"]
    assert [e.tag for e in apply_migrations(pg_url, journal)] == ["0001_b"]
    assert len(rows(pg_url)) == 2


def test_custom_table_and_failure_rolls_back(pg_url: str, tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path,
        {
            "0000_a": 'CREATE TABLE "a" ("id" int);',
            "0001_bad": 'ALTER TABLE "nope" ADD COLUMN "x" int;',
        },
    )
    with pytest.raises(ProviderError, match=r"0001_bad\.sql statement 1 failed.*nope"):
        apply_migrations(pg_url, read_journal(folder), table="ops.migs")
    assert rows(pg_url, "ops.migs") == []  # one transaction: 0000_a was rolled back too
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('public.a')").fetchone() == (None,)


def test_commit_inside_migration_runs_concurrently_like_drizzle(
    pg_url: str, tmp_path: Path
) -> None:
    folder = make_folder(
        tmp_path,
        {
            "0000_a": 'CREATE TABLE "a" ("id" int);',
            "0001_idx": "COMMIT;--> statement-breakpoint\n"
            'CREATE INDEX CONCURRENTLY "a_id_idx" ON "a" ("id");',
        },
    )
    apply_migrations(pg_url, read_journal(folder))
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('public.a_id_idx')").fetchone()[0] is not None
    assert len(rows(pg_url)) == 2


def test_tracking_table_parse() -> None:
    assert (
        str(TrackingTable.parse("drizzle.__drizzle_migrations")) == "drizzle.__drizzle_migrations"
    )
    assert TrackingTable.parse("x").schema == "drizzle"
    with pytest.raises(ProviderError):
        TrackingTable.parse(".x")
