"""``rollbot migrations status|show``: the drizzle folder against the tracking table.

``status`` reports applied and pending migrations and what drizzle never
checks (hash drift, backdated entries, orphan files). ``show`` prints the
newest migrations with their SQL (the runbook's "identify the problematic
change"). The folder, database and table come from ``--env`` (the config) or
are given directly; explicit flags win over the environment's values.
``status --json`` prints the comparison as one object (docs/cli-json.md).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.errors import NotFoundError, RollbotError
from handlers.jsonout import add_json_flag, emit, iso_from_millis
from handlers.runtime import load_config
from providers.drizzle.apply import DEFAULT_TABLE
from providers.drizzle.journal import Journal, JournalEntry, read_journal
from providers.drizzle.tracking import MigrationStatus, migration_status


@dataclass(frozen=True)
class DrizzleTarget:
    """Where the migrations live and which database/table they go to."""

    folder: Path
    url: str | None
    table: str


def add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", metavar="NAME", help="environment from the configuration")
    p.add_argument("--database-url", metavar="URL", help="database (default: the environment's)")
    p.add_argument(
        "--migrations", metavar="DIR", help="drizzle folder (default: the environment's)"
    )
    p.add_argument(
        "--table", metavar="SCHEMA.TABLE", help=f"tracking table (default {DEFAULT_TABLE})"
    )


def resolve_target(args: argparse.Namespace, *, need_url: bool) -> DrizzleTarget:
    """Combine ``--env`` with explicit flags; a clear message when something is missing."""
    folder: Path | None = Path(args.migrations) if args.migrations else None
    url: str | None = args.database_url
    table: str | None = args.table
    if args.env:
        env = load_config(args.config).environment(args.env)
        folder = folder or env.migrations_dir
        table = table or env.migrations_table
        if url is None and (need_url or env.database_url_env):
            try:
                url = env.database_url()
            except RollbotError:
                if need_url:
                    raise
    if folder is None:
        raise NotFoundError(
            "no migrations folder: pass --migrations DIR or an --env with migrations_dir"
        )
    if need_url and not url:
        raise NotFoundError("no database: pass --database-url URL or --env NAME")
    return DrizzleTarget(folder, url, table or DEFAULT_TABLE)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrations", help="drizzle migrations: status against the database, newest SQL"
    )
    inner = p.add_subparsers(dest="migrations_command", metavar="ACTION", required=True)
    status = inner.add_parser(
        "status", help="applied, pending, hash drift, backdated and orphan files"
    )
    add_target_args(status)
    add_json_flag(status)
    status.set_defaults(func=run_status)
    show = inner.add_parser("show", help="the newest journal entries with their SQL")
    add_target_args(show)
    show.add_argument("-n", "--count", type=int, default=3, help="how many (default 3)")
    show.set_defaults(func=run_show)


def run_status(args: argparse.Namespace) -> int:
    target = resolve_target(args, need_url=True)
    journal = read_journal(target.folder)
    assert target.url is not None
    status = migration_status(target.url, journal, target.table)
    if args.json:
        emit(status_json(status))
    else:
        print(status.render())
    return 1 if status.problems else 0


def entry_json(e: JournalEntry) -> dict[str, Any]:
    """``when`` is drizzle's key (epoch ms, what the tracking row's created_at holds)."""
    return {
        "idx": e.idx,
        "tag": e.tag,
        "file": e.path.name,
        "when": e.when,
        "created_at": iso_from_millis(e.when),
        "hash": e.hash,
    }


def status_json(status: MigrationStatus) -> dict[str, Any]:
    """Applied and pending entries, then each kind of problem; ``problems`` as in the text."""
    return {
        "table": str(status.table),
        "applied": [entry_json(e) for e in status.applied],
        "pending": [entry_json(e) for e in status.pending],
        "newest_applied": status.applied[-1].tag if status.applied else None,
        "drift": [
            {"file": d.entry.path.name, "applied_hash": d.applied_hash, "file_hash": d.entry.hash}
            for d in status.drift
        ],
        "backdated": [entry_json(e) for e in status.skipped],
        "unknown_rows": [
            {"id": r.id, "created_at": iso_from_millis(r.created_at), "when": r.created_at}
            for r in status.unknown_rows
        ],
        "orphans": [p.name for p in status.orphans],
        "problems": status.problems,
    }


def render_newest(journal: Journal, count: int) -> str:
    out: list[str] = []
    for entry in list(journal.entries)[-max(count, 1) :][::-1]:
        out.append(f"== {entry.path.name} (idx {entry.idx}, when {entry.when})")
        out.append(entry.sql.rstrip())
    return "\n".join(out)


def run_show(args: argparse.Namespace) -> int:
    target = resolve_target(args, need_url=False)
    print(render_newest(read_journal(target.folder), args.count))
    return 0
