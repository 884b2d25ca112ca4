"""Read a Drizzle migrations folder through ``meta/_journal.json``.

The journal is the truth: drizzle-kit only runs the entries it lists, so
``.sql`` files it does not name are orphans, and tags need not be numbered.
The hash of an entry is the sha256 of the whole file, exactly as drizzle's
migrator stores it in ``drizzle.__drizzle_migrations.hash``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bot.errors import ProviderError

BREAKPOINT = "--> statement-breakpoint"
SUPPORTED_VERSIONS = {"5", "6", "7"}
SUPPORTED_DIALECTS = {"pg", "postgresql"}


class MigrationsFolderError(ProviderError):
    """The migrations folder or its journal cannot be used."""


@dataclass(frozen=True)
class JournalEntry:
    idx: int
    tag: str
    when: int
    breakpoints: bool
    path: Path

    @cached_property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @cached_property
    def hash(self) -> str:
        """sha256 of the file's text, as drizzle's migrator computes it."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    @property
    def statements(self) -> list[str]:
        """The statements drizzle sends one by one (split on the breakpoint marker)."""
        parts = self.sql.split(BREAKPOINT) if self.breakpoints else [self.sql]
        return [p for p in (part.strip() for part in parts) if p]


@dataclass(frozen=True)
class Journal:
    folder: Path
    version: str
    dialect: str
    entries: tuple[JournalEntry, ...]

    @property
    def newest(self) -> JournalEntry | None:
        return self.entries[-1] if self.entries else None

    def entry(self, tag_or_idx: str | int) -> JournalEntry:
        for e in self.entries:
            if e.tag == tag_or_idx or e.idx == tag_or_idx or str(e.idx) == str(tag_or_idx):
                return e
        raise MigrationsFolderError(f"{self.folder}: no journal entry {tag_or_idx!r}")

    def orphan_files(self) -> list[Path]:
        """``.sql`` files in the folder that no journal entry names (drizzle never runs them)."""
        named = {e.path.name for e in self.entries}
        return sorted(p for p in self.folder.glob("*.sql") if p.name not in named)


def is_drizzle_v1_layout(folder: Path) -> bool:
    """drizzle-kit 1.0 writes one folder per migration (``<ts>_<name>/migration.sql``), no journal."""
    return any((child / "migration.sql").is_file() for child in folder.iterdir() if child.is_dir())


def read_journal(folder: str | Path) -> Journal:
    """Parse and check the journal; every problem names the file or entry."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MigrationsFolderError(f"{folder}: migrations folder does not exist")
    journal_path = folder / "meta" / "_journal.json"
    if not journal_path.is_file():
        if is_drizzle_v1_layout(folder):
            raise MigrationsFolderError(
                f"{folder}: drizzle 1.0 layout (one folder per migration, no meta/_journal.json) "
                "is not supported yet; use drizzle-kit 0.x output"
            )
        raise MigrationsFolderError(
            f"{journal_path}: journal not found (is this a drizzle folder?)"
        )
    try:
        data = json.loads(journal_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MigrationsFolderError(f"{journal_path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise MigrationsFolderError(f"{journal_path}: no 'entries' list")
    version = str(data.get("version", ""))
    dialect = str(data.get("dialect", ""))
    if version not in SUPPORTED_VERSIONS:
        raise MigrationsFolderError(
            f"{journal_path}: journal version {version!r} not supported (5, 6 or 7)"
        )
    if dialect not in SUPPORTED_DIALECTS:
        raise MigrationsFolderError(
            f"{journal_path}: dialect {dialect!r} is not PostgreSQL ('pg' or 'postgresql')"
        )
    entries: list[JournalEntry] = []
    for position, raw in enumerate(data["entries"]):
        try:
            tag = str(raw["tag"])
            when = int(raw["when"])
            idx = int(raw.get("idx", position))
        except (KeyError, TypeError, ValueError) as exc:
            raise MigrationsFolderError(
                f"{journal_path}: entry #{position} is missing 'tag' or 'when'"
            ) from exc
        path = folder / f"{tag}.sql"
        if not path.is_file():
            raise MigrationsFolderError(
                f"{journal_path}: entry {tag!r} names missing file {path.name}"
            )
        entries.append(JournalEntry(idx, tag, when, bool(raw.get("breakpoints", True)), path))
    return Journal(folder, version, dialect, tuple(entries))
