"""``rollbot snapshot --env NAME``: the runbook's ``npm run db:snapshot``, verified.

Takes a snapshot into the environment's backups location with progress on
stderr (a live bar on a terminal, else a line when data flows and one at the
end), verifies it, prints its manifest summary and applies the retention
rules. ``--list`` shows what is stored, ``--verify NAME`` re-checks one,
``--prune`` applies retention alone, to the snapshots and to the databases swap
restores kept (``<db>_before_restore_<time>``, never the newest).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot.config import EnvironmentConfig
from bot.errors import RollbotError
from bot.redact import redact
from handlers.jsonout import add_json_flag, emit, iso
from handlers.progress import TransferProgress
from handlers.runtime import load_config
from providers.postgres.snapshot import (
    DEFAULT_FORMAT,
    FORMATS,
    Snapshot,
    apply_retention,
    create_snapshot,
    human_size,
    list_snapshots,
    verify_snapshot,
)
from providers.storage import BackupStorage, open_storage


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "snapshot", help="take a verified snapshot (the runbook's db:snapshot), list or verify"
    )
    p.add_argument("--env", metavar="NAME", required=True, help="environment from the config")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="list stored snapshots, newest first")
    action.add_argument("--verify", metavar="SNAPSHOT", help="verify one stored snapshot")
    action.add_argument(
        "--prune",
        action="store_true",
        help="apply the retention rules only, to snapshots and to the databases restores kept",
    )
    p.add_argument(
        "--format",
        choices=list(FORMATS),
        default=DEFAULT_FORMAT,
        help=f"archive format (default {DEFAULT_FORMAT}: parallel dump and restore)",
    )
    p.add_argument("--jobs", type=int, default=2, help="parallel pg_dump jobs (default 2)")
    p.add_argument(
        "--physical",
        nargs="?",
        const="full",
        choices=("full", "diff", "incr"),
        help="a pgBackRest backup of the whole cluster ([pitr] section): full (default), diff, incr",
    )
    p.add_argument("--keep-all", action="store_true", help="do not apply retention afterwards")
    p.add_argument("--dry-run", action="store_true", help="with --prune: only show what goes")
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    add_json_flag(p, "with --list: one JSON object on stdout")
    p.set_defaults(func=run)


def _storage(env: EnvironmentConfig) -> BackupStorage:
    return open_storage(env.backups, endpoint_url=env.backups_s3_endpoint_url)


def describe_snapshot(snap: Snapshot) -> list[str]:
    m = snap.manifest or {}
    lines = [f"{snap.name}  ({snap.format}, {human_size(snap.size)})"]
    if not m:
        return [*lines, "  no manifest (a plain runbook dump)"]
    head = m.get("migrations_head")
    head_text = (
        "no migrations table"
        if head is None
        else "none applied"
        if not head
        else f"#{head.get('id', '?')} {str(head.get('hash', ''))[:16]}"
    )
    counts = m.get("row_counts") or {}
    lines += [
        f"  database:   {m.get('database')} on PostgreSQL {m.get('server_version')}",
        f"  created:    {m.get('created_at')} (took {m.get('duration_seconds', 0):.1f}s)",
        f"  files:      {len(m.get('files', {}))}, sha256 recorded for each",
        f"  migrations: {m.get('migrations_table')} head {head_text}",
        f"  tables:     {len(counts)} ({sum(counts.values())} rows)",
    ]
    if m.get("label"):
        lines.append(f"  label:      {m['label']}")
    return lines


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    """One stored snapshot for ``--list --json``: the same keys with or without a manifest."""
    m = snap.manifest or {}
    head = m.get("migrations_head")
    counts = m.get("row_counts")
    return {
        "name": snap.name,
        "format": snap.format,
        "created_at": iso(snap.created_at),
        "size": snap.size,
        "files": len(snap.files),
        "has_manifest": bool(m),
        "database": m.get("database"),
        "server": m.get("server"),
        "server_version": m.get("server_version"),
        "label": m.get("label"),
        "purpose": snap.purpose,
        "incident": m.get("incident"),
        "migrations_table": m.get("migrations_table"),
        "migrations_head": {"id": head.get("id"), "hash": head.get("hash")} if head else None,
        "tables": len(counts) if counts is not None else None,
        "rows": sum(counts.values()) if counts is not None else None,
        "duration_seconds": m.get("duration_seconds"),
    }


def run(args: argparse.Namespace) -> int:
    env = load_config(args.config).environment(args.env)
    storage = _storage(env)
    out = sys.stdout
    if args.json and not args.list:
        raise RollbotError("--json goes with --list (the other actions print text)")
    if args.list:
        snaps = list_snapshots(storage)
        if args.json:
            emit({"location": storage.location, "snapshots": [snapshot_json(s) for s in snaps]})
            return 0
        if not snaps:
            print(f"no snapshots in {redact(storage.location)}", file=out)
        for snap in snaps:
            print(redact(snap.summary()), file=out)
        if env.pitr is not None:
            from providers.pgbackrest.status import status

            for line in status(env, run_check=False).lines():
                print(redact(line), file=out)
        return 0
    if args.verify:
        snap = verify_snapshot(storage, args.verify)
        print(f"verified: {snap.name} (checksums and table of contents)", file=out)
        for line in describe_snapshot(snap):
            print(redact(line), file=out)
        return 0
    if args.prune:
        _prune(env, storage, dry_run=args.dry_run)
        return _prune_kept_databases(env, dry_run=args.dry_run)
    if args.physical:
        return _physical(env, args)
    url = env.database_url()
    previous = next(
        (s for s in list_snapshots(storage) if s.format == args.format and s.manifest), None
    )
    bar = None
    if not args.no_progress:
        bar = TransferProgress(sys.stderr, previous.size if previous else None, "snapshot")
    try:
        snap = create_snapshot(
            url,
            storage,
            format=args.format,
            jobs=args.jobs,
            migrations_table=env.migrations_table,
            progress=bar,
        )
    except BaseException:
        if bar:
            bar.abandon()
        raise
    if bar:
        bar.finish(snap.size)
    print(f"snapshot written and verified: {snap.name} in {redact(storage.location)}", file=out)
    for line in describe_snapshot(snap):
        print(redact(line), file=out)
    if not args.keep_all:
        _prune(env, storage, dry_run=False)
    return 0


def _physical(env: EnvironmentConfig, args: argparse.Namespace) -> int:
    """``--physical``: a pgBackRest backup, progress on stderr, described on stdout."""
    from providers.pgbackrest.backup import percent_printer, physical_backup

    show = None if args.no_progress else percent_printer(lambda t: print(t, file=sys.stderr))
    backup = physical_backup(env, args.physical, show)
    print(f"physical backup written: {redact(backup.line())}")
    return 0


def _prune(env: EnvironmentConfig, storage: BackupStorage, *, dry_run: bool) -> int:
    result = apply_retention(
        storage,
        keep_last=env.retention.keep_last,
        keep_days=env.retention.keep_days,
        dry_run=dry_run,
    )
    verb = "would delete" if dry_run else "deleted"
    for name in result.deleted:
        print(f"retention: {verb} {name}", file=sys.stdout)
    print(
        f"retention: kept {len(result.kept)} snapshot(s)"
        + (f"; newest verified: {result.protected}" if result.protected else ""),
        file=sys.stdout,
    )
    return 0


def _prune_kept_databases(env: EnvironmentConfig, *, dry_run: bool) -> int:
    """The same retention for the ``<db>_before_restore_<time>`` databases restores kept
    (never the newest): the plan first, then the drops."""
    if env.provider != "postgres":
        return 0
    from providers.postgres.kept import drop_kept, plan_kept_retention

    url = env.database_url()
    plan = plan_kept_retention(url, env.retention.keep_last, env.retention.keep_days)
    verb = "would drop" if dry_run else "dropping"
    for kept in plan.drop:
        print(f"retention: {verb} kept database {kept.name} ({human_size(kept.size)})")
    if not dry_run:
        drop_kept(url, plan)
    print(f"retention: kept {len(plan.keep)} database(s) from earlier restores")
    return 0
