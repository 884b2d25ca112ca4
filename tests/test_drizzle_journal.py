import json
from pathlib import Path

import pytest

from providers.drizzle.journal import MigrationsFolderError, read_journal

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "drizzle"


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.iterdir() if p.is_dir()))
def test_reads_every_sample(name: str) -> None:
    journal = read_journal(SAMPLES / name)
    assert journal.entries
    assert all(len(e.hash) == 64 for e in journal.entries)
    assert journal.newest is journal.entries[-1]


def _folder(tmp_path: Path, entries: list[dict], files: dict[str, str]) -> Path:
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "_journal.json").write_text(
        json.dumps({"version": "7", "dialect": "postgresql", "entries": entries})
    )
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_missing_file_names_the_entry(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [{"idx": 0, "when": 1, "tag": "0000_init", "breakpoints": True}], {})
    with pytest.raises(MigrationsFolderError, match="0000_init"):
        read_journal(folder)


def test_no_journal(tmp_path: Path) -> None:
    with pytest.raises(MigrationsFolderError, match="journal not found"):
        read_journal(tmp_path)


def test_drizzle_v1_layout_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "20250101000000_init").mkdir()
    (tmp_path / "20250101000000_init" / "migration.sql").write_text("select 1;")
    with pytest.raises(MigrationsFolderError, match=r"drizzle 1\.0"):
        read_journal(tmp_path)


def test_orphans_and_statements(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        [{"idx": 0, "when": 1, "tag": "custom_name", "breakpoints": True}],
        {
            "custom_name.sql": "CREATE TABLE a (id int);\n--> statement-breakpoint\nCREATE TABLE b (id int);",
            "0001_orphan.sql": "select 1;",
        },
    )
    journal = read_journal(folder)
    assert [p.name for p in journal.orphan_files()] == ["0001_orphan.sql"]
    assert journal.entries[0].statements == ["CREATE TABLE a (id int);", "CREATE TABLE b (id int);"]
