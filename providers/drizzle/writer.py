"""Add a drafted reverse to a drizzle folder as the next migration, the way drizzle-kit would.

Why a snapshot too: drizzle-kit diffs ``schema.ts`` against the newest
``meta/NNNN_snapshot.json``. Without a snapshot for the revert, the next
``drizzle-kit generate`` (after the team reverts ``schema.ts``) would draft the
same reverse again. The revert brings the schema back to the state before the
bad migration, so that state's snapshot is copied forward (new id, ``prevId``
chained) when the folder still has it.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ProviderError
from providers.drizzle.journal import Journal, JournalEntry, read_journal
from providers.drizzle.reverse import ReverseDraft, label, parse_migration
from providers.drizzle.snapshot_model import snapshot_path


@dataclass(frozen=True)
class WrittenRevert:
    entry: JournalEntry
    snapshot: Path | None
    commit_message: str
    notes: list[str]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.rollbot-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def describe_change(entry: JournalEntry) -> str:
    """A few words on what the migration did, for the commit message."""
    try:
        statements = parse_migration(entry.sql, entry.path.name)
    except ProviderError:
        return entry.tag
    items = [label(s) for s in statements]
    text = ", ".join(items[:3])
    if len(items) > 3:
        text += f" and {len(items) - 3} more"
    return text or entry.tag


def commit_message(entry: JournalEntry) -> str:
    """The runbook's form: ``revert: rollback migration XXXX - description``."""
    number = re.match(r"^(\d+)", entry.tag)
    label = number.group(1) if number else entry.tag
    return f"revert: rollback migration {label} - {describe_change(entry)}"


def _header(draft: ReverseDraft) -> str:
    lines = [f"-- rollbot: reverse of {draft.source}; review before merging"]
    lines += [f"-- DATA LOSS: {n}" for n in draft.data_loss]
    lines += [f"-- warning: {w}" for w in draft.warnings]
    lines += [f"-- NEEDS A PERSON: {n}" for n in draft.needs_person]
    return "\n".join(line.replace("\n", " ") for line in lines) + "\n"


def write_revert(
    journal: Journal, source: JournalEntry, draft: ReverseDraft, now_ms: int | None = None
) -> WrittenRevert:
    """Write ``NNNN_revert_<tag>.sql``, its journal entry and (when possible) its snapshot."""
    if not draft.statements:
        raise ProviderError(f"the reverse of {source.path.name} has no statements; nothing written")
    journal_path = journal.folder / "meta" / "_journal.json"
    data = json.loads(journal_path.read_text(encoding="utf-8"))
    raw_entries = data["entries"]
    newest = journal.newest
    assert newest is not None
    idx = max(e.idx for e in journal.entries) + 1
    tag = f"{idx:04d}_revert_{source.tag}"
    sql_path = journal.folder / f"{tag}.sql"
    if sql_path.exists():
        raise ProviderError(f"{sql_path} already exists; not overwritten")
    # drizzle applies only entries newer than the newest applied one: never go back in time.
    when = max(now_ms if now_ms is not None else int(time.time() * 1000), newest.when + 1)
    last_raw = raw_entries[-1] if raw_entries else {}
    new_raw = {
        "idx": idx,
        "version": last_raw.get("version", data.get("version")),
        "when": when,
        "tag": tag,
        "breakpoints": last_raw.get("breakpoints", True),
    }
    notes: list[str] = []
    snapshot = _copy_snapshot_forward(journal, source, newest, idx, notes)
    _atomic_write(sql_path, _header(draft) + draft.sql)
    data["entries"] = [*raw_entries, new_raw]
    _atomic_write(journal_path, json.dumps(data, indent=2) + "\n")
    entry = read_journal(journal.folder).entry(tag)
    return WrittenRevert(entry, snapshot, commit_message(source), notes)


def _copy_snapshot_forward(
    journal: Journal, source: JournalEntry, newest: JournalEntry, idx: int, notes: list[str]
) -> Path | None:
    position = journal.entries.index(source)
    if source is not newest:
        notes.append(
            f"no snapshot written: {source.tag} is not the newest migration, so the schema before "
            "it is not the schema after this revert; revert schema.ts and run drizzle-kit generate"
        )
        return None
    if position == 0:
        notes.append("no snapshot written: the reverted migration was the first one")
        return None
    before = snapshot_path(journal, journal.entries[position - 1])
    latest = snapshot_path(journal, newest)
    if not before.is_file():
        notes.append(
            f"no snapshot written: meta/{before.name} is not in the folder; revert schema.ts and "
            "run drizzle-kit generate, or it will draft this reverse again"
        )
        return None
    data = json.loads(before.read_text(encoding="utf-8"))
    if latest.is_file():
        data["prevId"] = json.loads(latest.read_text(encoding="utf-8")).get(
            "id", data.get("prevId")
        )
    data["id"] = str(uuid.uuid4())
    target = journal.folder / "meta" / f"{idx:04d}_snapshot.json"
    _atomic_write(target, json.dumps(data, indent=2) + "\n")
    notes.append(
        f"meta/{target.name} is meta/{before.name} carried forward (schema before {source.tag})"
    )
    return target
