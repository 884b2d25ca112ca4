"""``rollbot forward-fix draft``: printing, --write, catalog lookups and bad input."""

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from handlers.cli import main
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from tests.test_drizzle_apply import make_folder

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "drizzle"
BP = "\n--> statement-breakpoint\n"

FILES = {
    "0000_init": 'CREATE TABLE "users" ("id" serial PRIMARY KEY NOT NULL, "email" text NOT NULL, "nick" text);',
    "0001_backfill": 'ALTER TABLE "users" ADD COLUMN "new_column" varchar(100);'
    + BP
    + 'UPDATE "users" SET "new_column" = \'x\';'
    + BP
    + "DO $$ BEGIN RAISE NOTICE 'hi'; END $$;",
}


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_lists_statements_it_cannot_reverse_by_file_and_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(tmp_path, FILES)
    before = snapshot(folder)
    assert main(["forward-fix", "draft", "--migrations", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert 'ALTER TABLE "users" DROP COLUMN "new_column";' in out
    assert "-- NEEDS A PERSON: 0001_backfill.sql statement 2 (line 3): an UPDATE backfill" in out
    assert "-- NEEDS A PERSON: 0001_backfill.sql statement 3 (line 5): a DO block" in out
    assert "nothing written" in err and "nothing written" not in out  # stdout is only SQL
    assert snapshot(folder) == before  # nothing written without --write


@pytest.mark.postgres
def test_write_adds_next_migration_and_prints_commit_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    folder = tmp_path / "vercel"
    shutil.copytree(SAMPLES / "vercel__ai-chatbot", folder)
    apply_migrations(pg_url, read_journal(folder))
    assert main(["forward-fix", "draft", "--migrations", str(folder), "--write"]) == 0
    err = capsys.readouterr().err  # what was done goes to stderr; stdout stays the SQL
    assert "commit message: revert: rollback migration 0008 - drop column Chat.lastContext" in err
    journal = read_journal(folder)
    new = journal.newest
    assert new.tag == "0009_revert_0008_flat_forgotten_one" and new.idx == 9
    assert new.when > journal.entries[-2].when
    raw = json.loads((folder / "meta" / "_journal.json").read_text())["entries"][-1]
    assert raw["version"] == "7" and raw["breakpoints"] is True
    snap = json.loads((folder / "meta" / "0009_snapshot.json").read_text())
    prev = json.loads((folder / "meta" / "0008_snapshot.json").read_text())
    assert (
        snap["prevId"] == prev["id"] and "lastContext" in snap["tables"]["public.Chat"]["columns"]
    )
    # drizzle-style apply of the folder now re-adds the column
    assert [e.tag for e in apply_migrations(pg_url, journal)] == [new.tag]
    with psycopg.connect(pg_url) as conn:
        cols = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'Chat'"
        ).fetchall()
    assert ("lastContext",) in cols


@pytest.mark.postgres
def test_uses_live_catalog_when_database_has_not_run_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    folder = make_folder(
        tmp_path,
        {
            "0000_init": FILES["0000_init"],
            "0001_drop": 'ALTER TABLE "users" DROP COLUMN "nick";',
        },
    )
    apply_migrations(pg_url, read_journal(folder), upto=0)
    assert (
        main(["forward-fix", "draft", "--migrations", str(folder), "--database-url", pg_url]) == 0
    )
    out = capsys.readouterr().out
    assert 'ALTER TABLE "public"."users" ADD COLUMN "nick" text;' in out
    assert "DATA LOSS: the data of column users.nick is gone" in out
    assert urlsplit(pg_url).password not in out
    apply_migrations(pg_url, read_journal(folder))
    assert (
        main(["forward-fix", "draft", "--migrations", str(folder), "--database-url", pg_url]) == 0
    )
    out = capsys.readouterr().out
    assert "already ran 0001_drop" in out
    assert (
        "NEEDS A PERSON: 0001_drop.sql statement 1 (line 1): the definition of dropped column"
        in out
    )


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rollbot: ")
    return err


def test_bad_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "journal not found" in _one_line_error(
        ["forward-fix", "draft", "--migrations", str(tmp_path)], capsys
    )
    folder = make_folder(tmp_path / "a", {"0000_a": "SELECT 1;"})
    (folder / "0000_a.sql").unlink()
    assert "names missing file 0000_a.sql" in _one_line_error(
        ["forward-fix", "draft", "--migrations", str(folder)], capsys
    )
    folder = make_folder(
        tmp_path / "b", {"0000_a": "SELECT 1;" + BP + 'ALTER TABLE "a" ADD COLUM "x" int;'}
    )
    err = _one_line_error(["forward-fix", "draft", "--migrations", str(folder)], capsys)
    assert "0000_a.sql statement 2 (line 3): cannot parse" in err
    assert "no migrations folder" in _one_line_error(["forward-fix", "draft"], capsys)


@pytest.mark.postgres
def test_missing_tracking_table_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    folder = make_folder(tmp_path, FILES)
    err = _one_line_error(
        [
            "forward-fix",
            "draft",
            "--migrations",
            str(folder),
            "--database-url",
            pg_url,
            "--table",
            "ops.migs",
        ],
        capsys,
    )
    assert "tracking table ops.migs does not exist" in err
    assert urlsplit(pg_url).password not in err


def test_write_refuses_an_empty_reverse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_folder(tmp_path, {"0000_x": "UPDATE t SET a = 1;"})
    err = _one_line_error(["forward-fix", "draft", "--migrations", str(folder), "--write"], capsys)
    assert "no statements; nothing written" in err
    assert len(read_journal(folder).entries) == 1
