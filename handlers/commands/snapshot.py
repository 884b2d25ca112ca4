"""``rollbot snapshot --env NAME``: the runbook's ``npm run db:snapshot``, verified.

Takes a snapshot into the environment's backups location with a progress bar
on stderr, verifies it, prints its manifest summary and applies the retention
rules. ``--list`` shows what is stored, ``--verify NAME`` re-checks one,
``--prune`` applies retention alone, to the snapshots and to the databases swap
restores kept (``<db>_before_restore_<time>``, never the newest).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from bot.config import EnvironmentConfig, load_settings
from bot.redact import redact
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
    p.add_argument("--keep-all", action="store_true", help="do not apply retention afterwards")
    p.add_argument("--dry-run", action="store_true", help="with --prune: only show what goes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


class ProgressBar:
    """A one-line text bar on stderr; without a known total it shows bytes and rate."""

    def __init__(self, stream: TextIO, total: int | None, label: str) -> None:
        self.stream, self.total, self.label = stream, total, label
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.tty = stream.isatty()
        self.drawn = False

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last_draw < (0.1 if self.tty else 1.0):
            return
        self.last_draw = now
        self.draw(done)

    def draw(self, done: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = f"{human_size(int(done / elapsed))}/s"
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"{self.label} [{bar:<30}] {frac:4.0%} {human_size(done)} {rate}"
        else:
            text = f"{self.label} {human_size(done)} {rate} {elapsed:.1f}s"
        self.stream.write(("\r" if self.tty else "") + text + ("" if self.tty else "\n"))
        self.stream.flush()
        self.drawn = True

    def abandon(self) -> None:
        """End a half-drawn bar's line, so the error that follows stands on a line of its own."""
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()

    def finish(self, done: int) -> None:
        if self.total:
            self.total = max(self.total, done)
        self.draw(done)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


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


def run(args: argparse.Namespace) -> int:
    env = load_settings(args.config).environment(args.env)
    storage = _storage(env)
    out = sys.stdout
    if args.list:
        snaps = list_snapshots(storage)
        if not snaps:
            print(f"no snapshots in {redact(storage.location)}", file=out)
        for snap in snaps:
            print(redact(snap.summary()), file=out)
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
    url = env.database_url()
    previous = next(
        (s for s in list_snapshots(storage) if s.format == args.format and s.manifest), None
    )
    bar = None
    if not args.no_progress:
        bar = ProgressBar(sys.stderr, previous.size if previous else None, "snapshot")
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
