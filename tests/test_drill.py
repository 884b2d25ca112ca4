"""``rollbot drill`` end to end on a real throwaway PostgreSQL (small ``--size``).

The drill starts its own cluster; a recording subclass lets the test learn that
cluster's random password, to prove it appears nowhere in the terminal output,
the reports, the audit log or the state database (acceptance 4).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

import handlers.drill.runner as runner
from handlers.cli import main
from handlers.commands.drill import parse_size
from providers.drizzle.apply import apply_migrations, apply_sql
from providers.drizzle.journal import read_journal
from providers.postgres.catalog import describe_schema, diff_schemas
from providers.postgres.cluster import ThrowawayCluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

METHODS = (
    "Forward-fix (reverse migration)",
    "Snapshot restore (pg_dump)",
    "Development reset",
    "Point-in-time restore (pgBackRest, WAL replay)",
    "Hung migration (blocking session ended)",
)


@pytest.fixture
def passwords(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    class Recording(ThrowawayCluster):
        def start(self) -> ThrowawayCluster:
            seen.append(self.password)
            return super().start()

    monkeypatch.setattr(runner, "ThrowawayCluster", Recording)
    return seen


def _table_rows(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        for title in METHODS:
            if line.startswith(title + " "):
                rows[title] = line[len(title) :].split()
    return rows


def _scan(output: Path, secret: str) -> list[str]:
    forms = {secret, quote(secret, safe="")}
    found = []
    for path in output.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}" for form in forms if form.encode() in data]
    return found


def test_drill_verifies_every_method_and_never_shows_the_password(
    tmp_path: Path, passwords: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    code = main(["drill", "--size", "3MB", "--output", str(output)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    rows = _table_rows(out)
    assert set(rows) == set(METHODS), out
    for title, (steps, seconds, verified) in rows.items():
        assert verified == "yes", (title, out)
        assert int(steps) >= 1 and float(seconds) >= 0
    # The incidents went through the core: approvals by a second person in production.
    audit = (output / "audit.log").read_text()
    assert "approved by drill-approver" in audit
    assert "pg_terminate_backend" not in err
    assert len(re.findall(r"INC-\d+ resolved", audit)) == 5, audit

    (md,) = output.glob("drill-report-*.md")
    (page,) = output.glob("drill-report-*.html")
    text = md.read_text()
    assert "5 of 5 methods verified" in text
    assert "exactly the 25 orders written after the snapshot are gone" in text
    assert "a development reset loses all data by design" in text
    assert "0004_revert_0003_hasty_priority" in text  # drafted by rollbot's forward-fix
    # Real WAL-replay PITR (acceptance 1): nothing missing up to the target, nothing after it.
    assert re.search(
        r"all \d+ rows written up to the restore point are present .*; 0 missing", text
    )
    assert re.search(r"0 of the \d+ rows written after the restore point are present", text)
    assert "the pre-migration schema is back" in text
    assert re.search(
        r"phase times: restore [\d.]+s, WAL replay [\d.]+s, verify [\d.]+s, switch", text
    )
    html = page.read_text()
    assert "<svg" in html and "<script" not in html
    assert html.count("<rect") >= 10  # one segment per step of every method

    # Snapshots and work folders are removed without --keep; the state and audit stay.
    assert not (output / "backups").exists() and not (output / "work").exists()
    assert (output / "drill-state.db").exists()

    (password,) = passwords
    assert len(password) >= 16
    assert password not in out + err
    assert _scan(output, password) == []


def test_a_method_that_cannot_be_verified_fails_the_drill(
    tmp_path: Path, passwords: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A team folder whose newest migration is a data change: no reverse can be drafted, so
    the forward-fix is not verified; the other methods still run and the exit code is 1."""
    folder = tmp_path / "team"
    shutil.copytree(runner.EXAMPLE_MIGRATIONS, folder)
    shutil.rmtree(folder / "reverse")
    (folder / "0003_hasty_priority.sql").write_text(
        'UPDATE "orders" SET "note" = NULL WHERE "status" = \'cancelled\';'
    )
    output = tmp_path / "out"
    code = main(["drill", "--size", "2MB", "--migrations", str(folder), "--output", str(output)])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "the drill FAILED" in err
    rows = _table_rows(out)
    assert rows["Forward-fix (reverse migration)"][-1] == "NO"
    for title in METHODS[1:]:
        assert rows[title][-1] == "yes", (title, out)
    (md,) = output.glob("drill-report-*.md")
    text = md.read_text()
    assert "4 of 5 methods verified" in text and "drill FAILED" in text
    assert "drill_data" in text  # generated data lives beside the team's own tables
    assert _scan(output, passwords[0]) == []


def test_the_shipped_reverse_undoes_the_problematic_migration(pg_url: str) -> None:
    journal = read_journal(runner.EXAMPLE_MIGRATIONS)
    apply_migrations(pg_url, journal, upto=journal.entries[-2].idx)
    with psycopg.connect(pg_url) as conn:
        before = describe_schema(conn)
    apply_migrations(pg_url, journal)
    with psycopg.connect(pg_url) as conn:
        assert diff_schemas(before, describe_schema(conn)), "0003 changes nothing?"
    reverse = runner.EXAMPLE_MIGRATIONS / "reverse" / "0003_hasty_priority.down.sql"
    apply_sql(pg_url, reverse.read_text(), "shipped reverse")
    with psycopg.connect(pg_url) as conn:
        assert diff_schemas(before, describe_schema(conn)) == []
    data = json.loads((runner.EXAMPLE_MIGRATIONS / "meta" / "_journal.json").read_text())
    assert [e["tag"] for e in data["entries"]][-1] == "0003_hasty_priority"
    assert journal.orphan_files() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("300MB", 300_000_000), ("1.5GB", 1_500_000_000), ("3mb", 3_000_000), ("2000000", 2_000_000)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("argv", [["--size", "lots"], ["--size", "10KB"], ["--size=-5MB"]])
def test_bad_size_is_one_clear_line(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["drill", *argv, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rollbot: --size") and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_migrations_folder_without_journal_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["drill", "--migrations", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no meta/_journal.json" in err
    assert not (tmp_path / "o").exists()


def test_without_pgbackrest_the_drill_says_so_in_one_line_and_runs_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import handlers.drill.pitr as pitr

    monkeypatch.setattr(pitr, "available", lambda: False)
    code = main(["drill", "--size", "2MB", "--output", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    skipped = [line for line in out.splitlines() if "pgBackRest" in line and "skipped" in line]
    assert skipped == [
        "point-in-time restore (pgBackRest) skipped: pgbackrest is not installed "
        "(apt-get install -y pgbackrest)"
    ]
    rows = _table_rows(out)
    assert set(rows) == set(METHODS) - {"Point-in-time restore (pgBackRest, WAL replay)"}
    assert all(r[-1] == "yes" for r in rows.values())
