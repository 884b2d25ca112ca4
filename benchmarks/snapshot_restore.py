"""rollbot's snapshot and restore against the runbook's raw pipelines, onto empty and full targets.

    uv run python benchmarks/snapshot_restore.py [--size 300MB] [--repeat 3] [--memory-size 1GB]

Runbook pipelines: ``pg_dump | gzip > snapshot.sql.gz`` and ``gunzip -c ... | psql``.
rollbot: ``create_snapshot`` (directory format, ``-j2 -Z1``, manifest, verified) and
``restore_snapshot`` (verify first, safety snapshot, parallel restore into a new
database, checks, swap). Restores are measured twice. Into an empty target, so the
safety snapshot is the same small cost a fresh target would have. And onto a full
target, the generated database itself, the one the snapshot is of, as in a real
incident where the production database exists and holds its data: rollbot's default
swap restore then dumps and verifies all of it as its safety snapshot beside the load
into the new database; the raw baseline on the same full target is
``gunzip -c clean.sql.gz | psql`` of a ``pg_dump --clean --if-exists | gzip`` dump,
which drops and recreates every object of the existing database. Prints medians, the
ratios (targets: snapshot <= 0.5x, restore <= 1.0x, shown for the full target too) and
rollbot's peak memory: the RSS of this process plus its children (pg_dump/pg_restore),
sampled while snapshots stream, for the default directory format and for the streamed
``sql.zst`` format (compressed and hashed in this process), and while restoring onto
the full target. On demand only; not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from psycopg import sql

from bot.redact import redact
from handlers.commands.drill import parse_size
from handlers.drill.dataset import fill
from handlers.drill.runner import EXAMPLE_MIGRATIONS
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.conn import connect
from providers.postgres.restore import RestoreResult, restore_snapshot
from providers.postgres.snapshot import create_snapshot
from providers.postgres.tools import ClientTools, child_env, find_client_tools
from providers.storage import BackupStorage, open_storage

PAGE = os.sysconf("SC_PAGE_SIZE")
FULL_TARGET = "bench"  # the generated database: snapshots are of it, full restores go onto it


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out += [int(c) for c in text]
    except OSError:
        return out
    return out


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, from /proc."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident * PAGE
        todo += _children(pid)
    return total


class PeakRss:
    """Samples the process tree's RSS every 20 ms while the block runs."""

    def __init__(self, root: int | None = None) -> None:
        self.root = root or os.getpid()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, tree_rss(self.root))

    def __enter__(self) -> PeakRss:
        self.peak = tree_rss(self.root)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def shell(command: str, env: dict[str, str]) -> None:
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {redact(command)}: {redact(proc.stderr.decode()[-300:])}")


def recreate(cluster: ThrowawayCluster, name: str) -> str:
    with connect(cluster.url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return cluster.url(name)


def checkpoint(url: str) -> None:
    """Write out what earlier steps left dirty, so the next timed restore does not pay."""
    with connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def other_source() -> dict[str, Any]:
    """Options for restoring into a fresh, differently named database: restore's source
    check asks for ``accept_other_source`` then."""
    from providers.postgres.restore_checks import RestoreOptions

    return {"options": RestoreOptions(accept_other_source=True)}


def psql_command(tools: ClientTools, dump: Path, safe_url: str) -> str:
    """The runbook's raw restore: a plain gzip dump replayed through psql."""
    psql = tools.pg_dump.parent / "psql"
    return f"gunzip -c '{dump}' | '{psql}' -q -v ON_ERROR_STOP=1 -o /dev/null '{safe_url}'"


def dump_clean(tools: ClientTools, src: str, out: Path) -> None:
    """The runbook's dump with DROP ... IF EXISTS first, so psql can replay it onto a
    database that already holds the data (a plain dump would fail on existing tables)."""
    safe_src, env = child_env(src)
    shell(f"'{tools.pg_dump}' --clean --if-exists '{safe_src}' | gzip > '{out}'", env)


@dataclass
class FullTarget:
    """Restore timings onto a full target, and rollbot's peak RSS while restoring."""

    raw: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)
    peak: int = 0
    steps: dict[str, float] = field(default_factory=dict)


def restore_onto_full(
    cluster: ThrowawayCluster, storage: BackupStorage, name: str, dump: Path, full: FullTarget
) -> None:
    """One raw and one rollbot restore onto the snapshot's own database itself,
    full of its data as production is in an incident: rollbot's safety snapshot dumps
    and verifies all of it. The swap's kept old database is dropped (disk)."""
    src = cluster.url(FULL_TARGET)
    tools = find_client_tools(cluster.major_version)
    safe_src, env = child_env(src)
    checkpoint(src)
    full.raw.append(timed(partial(shell, psql_command(tools, dump, safe_src), env)))
    checkpoint(src)
    results: list[RestoreResult] = []
    with PeakRss() as peak:
        full.ours.append(timed(lambda: results.append(restore_snapshot(src, storage, name))))
    full.peak = max(full.peak, peak.peak)
    full.steps = results[0].durations
    if results[0].kept_database:
        cluster.drop_database(results[0].kept_database)


STREAM_SCRIPT = """
import os, sys
from providers.storage import open_storage
from providers.postgres.snapshot import create_snapshot
from providers.postgres.restore import restore_snapshot
from providers.postgres.restore_checks import RestoreOptions
extra = {"options": RestoreOptions(accept_other_source=True)}  # into another database
storage = open_storage(sys.argv[2])
if sys.argv[1] == "snapshot":
    print(create_snapshot(os.environ["BENCH_URL"], storage, format="sql.zst").name)
else:
    restore_snapshot(os.environ["BENCH_URL"], storage, sys.argv[3], **extra)
"""


def print_full_row(full: FullTarget, db_bytes: int) -> None:
    """The full-target row of the table, then what exactly each side ran there."""
    raw, ours = statistics.median(full.raw), statistics.median(full.ours)
    ratio = ours / raw
    print(
        f"{'restore onto full (median s)':28}{raw:>14.2f}{ours:>10.2f}"
        f"{ratio:>8.2f}{'<= 1.0':>9}  {'ok' if ratio <= 1.0 else 'MISSED'}"
    )
    print(
        f"  full target: the snapshot's own {db_bytes / 1e6:,.0f} MB database, holding its data\n"
        "  raw: gunzip -c clean.sql.gz | psql -q -v ON_ERROR_STOP=1 -o /dev/null <full target>,\n"
        "       clean.sql.gz made by pg_dump --clean --if-exists <source> | gzip\n"
        "  rollbot: restore_snapshot (swap): verify, verified safety snapshot of the full\n"
        "       target beside the load into a new database, checks, swap"
    )


def _stream_once(url: str, *args: str) -> tuple[int, str]:
    """Run one snapshot or restore in a fresh rollbot process; its tree's peak RSS."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STREAM_SCRIPT, *args],
        env={**os.environ, "BENCH_URL": url},
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    with PeakRss(proc.pid) as peak:
        out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"streaming {args[0]} failed (exit {proc.returncode})")
    return peak.peak, out.strip()


def stream_peaks(
    cluster: ThrowawayCluster, url: str, storage: BackupStorage, tag: str
) -> tuple[int, int]:
    """Peak RSS of a rollbot process (and its children) while a plain zstd dump streams out
    of one database and back into another: measured in a fresh process, so only the
    streaming counts, not what this benchmark process accumulated."""
    location = str(storage.location)
    snap_peak, name = _stream_once(url, "snapshot", location)
    target = recreate(cluster, f"stream_target_{tag}")
    restore_peak, _ = _stream_once(target, "restore", location, name)
    return snap_peak, restore_peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="300MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--memory-size",
        metavar="SIZE",
        help="also stream a dump of a database this big (e.g. 1GB) through rollbot and compare "
        "peak memory with the --size run, to show it stays flat in the dump's size",
    )
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="rollbot-bench-"))
    with ThrowawayCluster() as cluster:
        src = cluster.create_database(FULL_TARGET)
        apply_migrations(src, read_journal(EXAMPLE_MIGRATIONS))
        data = fill(src, size)
        print(
            f"database: {data.bytes / 1e6:,.0f} MB ({data.users:,} users, {data.orders:,} orders, "
            f"{data.events:,} events), PostgreSQL {cluster.major_version}, {os.cpu_count()} cores"
        )
        tools = find_client_tools(cluster.major_version)
        safe_src, env = child_env(src)
        raw_file = work / "snapshot.sql.gz"
        raw_snap, raw_restore, our_snap, our_restore = [], [], [], []
        peaks: dict[str, int] = {}
        storage = open_storage(work / "backups")
        names: list[str] = []
        full, clean_file = FullTarget(), work / "clean.sql.gz"
        dump_clean(tools, src, clean_file)
        for i in range(args.repeat):
            raw_snap.append(
                timed(lambda: shell(f"'{tools.pg_dump}' '{safe_src}' | gzip > '{raw_file}'", env))
            )
            with PeakRss() as peak:
                our_snap.append(timed(lambda: names.append(create_snapshot(src, storage).name)))
            peaks["directory"] = max(peaks.get("directory", 0), peak.peak)
            target = recreate(cluster, "raw_target")
            safe_target, target_env = child_env(target)
            raw_command = psql_command(tools, raw_file, safe_target)
            raw_restore.append(timed(partial(shell, raw_command, target_env)))
            ours = recreate(cluster, f"our_target_{i}")
            restore = partial(restore_snapshot, ours, storage, names[-1], **other_source())
            our_restore.append(timed(restore))
            print(
                f"run {i + 1}: raw snapshot {raw_snap[-1]:.2f}s, rollbot {our_snap[-1]:.2f}s; "
                f"raw restore {raw_restore[-1]:.2f}s, rollbot {our_restore[-1]:.2f}s"
            )
            restore_onto_full(cluster, storage, names[-1], clean_file, full)
            print(
                f"run {i + 1}: onto a full target: raw restore {full.raw[-1]:.2f}s, rollbot "
                f"{full.ours[-1]:.2f}s (safety snapshot {full.steps['safety_snapshot']:.2f}s "
                f"beside load {full.steps['restore']:.2f}s)"
            )
        streamed = {data.bytes: stream_peaks(cluster, src, storage, "small")}
        if args.memory_size:
            big = cluster.create_database("bench_big")
            apply_migrations(big, read_journal(EXAMPLE_MIGRATIONS))
            big_data = fill(big, parse_size(args.memory_size))
            streamed[big_data.bytes] = stream_peaks(cluster, big, storage, "big")
        baseline = tree_rss(os.getpid())

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    snap_ratio = med(our_snap) / med(raw_snap)
    restore_ratio = med(our_restore) / med(raw_restore)
    print()
    print(f"{'':28}{'raw pipeline':>14}{'rollbot':>10}{'ratio':>8}{'target':>9}")
    print(
        f"{'snapshot (median s)':28}{med(raw_snap):>14.2f}{med(our_snap):>10.2f}"
        f"{snap_ratio:>8.2f}{'<= 0.5':>9}  {'ok' if snap_ratio <= 0.5 else 'MISSED'}"
    )
    print(
        f"{'restore (median s)':28}{med(raw_restore):>14.2f}{med(our_restore):>10.2f}"
        f"{restore_ratio:>8.2f}{'<= 1.0':>9}  {'ok' if restore_ratio <= 1.0 else 'MISSED'}"
    )
    print_full_row(full, data.bytes)
    print()
    print(f"peak RSS of rollbot + children while snapshotting {data.bytes / 1e6:,.0f} MB:")
    for what, value in peaks.items():
        print(f"  {what:36} {value / 1e6:8.1f} MB  {'ok' if value < 200e6 else 'OVER 200 MB'}")
    print("peak RSS of rollbot + children while restoring onto the full target (swap):")
    verdict = "ok" if full.peak < 200e6 else "OVER 200 MB"
    print(f"  {'directory, safety snapshot + load':36} {full.peak / 1e6:8.1f} MB  {verdict}")
    print("peak RSS while streaming a plain zstd dump through rollbot (snapshot / restore):")
    for db_bytes, (snap_peak, restore_peak) in sorted(streamed.items()):
        worst = max(snap_peak, restore_peak)
        print(
            f"  database {db_bytes / 1e6:8,.0f} MB: {snap_peak / 1e6:8.1f} MB / "
            f"{restore_peak / 1e6:8.1f} MB  {'ok' if worst < 200e6 else 'OVER 200 MB'}"
        )
    if len(streamed) > 1:
        (_, small), (_, large) = sorted(streamed.items())
        growth = max(large) / max(small)
        print(
            f"  growth with the dump's size: {growth:.2f}x  {'flat' if growth < 1.25 else 'GROWS'}"
        )
    print(f"  (this process at rest afterwards: {baseline / 1e6:.1f} MB)")
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0 if snap_ratio <= 0.5 and restore_ratio <= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
