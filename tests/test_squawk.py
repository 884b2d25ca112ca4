"""The squawk risk check on crafted migration files (the real squawk binary)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bot.errors import ProviderError
from providers.squawk import SquawkNotFoundError, check_files, find_squawk, parse_json_report

BREAK = "\n--> statement-breakpoint\n"


def migration(tmp_path: Path, name: str, *statements: str) -> Path:
    path = tmp_path / name
    path.write_text(BREAK.join(statements) + "\n")
    return path


def rules(paths: list[Path]) -> dict[str, list[tuple[str, int]]]:
    report = check_files(paths)
    out: dict[str, list[tuple[str, int]]] = {}
    for f in report.blocking:
        out.setdefault(f.rule, []).append((f.file, f.line))
    return out


def test_each_risky_change_is_blocking_with_file_and_line(tmp_path: Path) -> None:
    path = migration(
        tmp_path,
        "0003_risky.sql",
        'ALTER TABLE "users" DROP COLUMN "email";',
        'ALTER TABLE "users" ADD COLUMN "plan" text NOT NULL;',
        'CREATE INDEX "users_plan_idx" ON "users" ("plan");',
        'ALTER TABLE "users" ALTER COLUMN "age" SET DATA TYPE bigint;',
    )
    found = rules([path])
    assert found["ban-drop-column"] == [("0003_risky.sql", 1)]
    assert found["adding-required-field"] == [("0003_risky.sql", 3)]
    assert found["require-concurrent-index-creation"] == [("0003_risky.sql", 5)]
    assert found["changing-column-type"] == [("0003_risky.sql", 7)]


def test_additive_changes_are_not_blocking(tmp_path: Path) -> None:
    path = migration(
        tmp_path,
        "0004_additive.sql",
        'CREATE TABLE "posts" ("id" bigint PRIMARY KEY, "title" text);',
        'CREATE INDEX "posts_title_idx" ON "posts" ("title");',
        'ALTER TABLE "users" ADD COLUMN "nickname" text;',
    )
    report = check_files([path])
    assert report.blocking == []
    assert report.advice  # timeouts etc. are shown as advice, never silently dropped
    assert "0 blocking finding(s)" in report.lines()[0]


def test_findings_follow_the_order_of_the_files(tmp_path: Path) -> None:
    second = migration(tmp_path, "0002_b.sql", 'ALTER TABLE "a" DROP COLUMN "x";')
    first = migration(tmp_path, "0010_custom_name.sql", 'DROP TABLE "old";')
    report = check_files([first, second])
    assert [f.file for f in report.blocking] == ["0010_custom_name.sql", "0002_b.sql"]
    assert [f.rule for f in report.blocking] == ["ban-drop-table", "ban-drop-column"]
    text = "\n".join(report.lines())
    assert "BLOCKING 0010_custom_name.sql:1: ban-drop-table" in text


def test_unparsable_sql_is_a_blocking_finding(tmp_path: Path) -> None:
    path = migration(tmp_path, "0005_broken.sql", "ALTER TABLE foo ADD COLUMN ;")
    assert "syntax-error" in rules([path])


def test_no_pending_files_means_no_findings() -> None:
    report = check_files([])
    assert report.findings == [] and report.lines() == ["risk check: no pending migrations"]


def test_missing_file_and_garbage_output_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match=r"not found: .*0009_gone\.sql"):
        check_files([tmp_path / "0009_gone.sql"])
    with pytest.raises(ProviderError, match="squawk failed: Failed to find files"):
        parse_json_report("Failed to find files for provided patterns", "")


def test_binary_next_to_python_or_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Path(find_squawk()).name == "squawk"
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SquawkNotFoundError, match="squawk-cli"):
        find_squawk()
