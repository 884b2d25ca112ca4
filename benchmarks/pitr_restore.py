"""rollbot's pgBackRest PITR beside the same ``pgbackrest restore`` run by hand.

    uv run python benchmarks/pitr_restore.py [--size 100MB] [--repeat 3]

One archiving throwaway cluster (``providers.pgbackrest.throwaway``) with the drill's
generated data, a full backup, a steady writer, WAL archived past the target. By hand:
``pgbackrest restore --type=time --target=T --target-action=promote --set=L --pg1-path=D``,
``pg_ctl start`` on a free port with ``archive_mode=off``, then poll until promoted. rollbot:
the ``pgbackrest.restore`` step's run (the same backup set and target; its run-time checks, the
restore, the start, the wait for promotion, the check that replay stopped at the target).
Prints medians and the ratio (goal <= 1.1x). On demand only; not part of the tests.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import EnvironmentConfig, Settings
from bot.steps import StepContext, build_step
from handlers.commands.drill import parse_size
from handlers.drill.dataset import create_tables, fill
from handlers.runtime import register_provider_steps
from providers.pgbackrest import cluster_ops as ops
from providers.pgbackrest.restore_step import pg_target
from providers.pgbackrest.throwaway import ArchivingCluster
from providers.pgbackrest.tool import finish
from providers.postgres.conn import connect

URL_VAR = "ROLLBOT_BENCH_PITR_URL"


def prepare(arch: ArchivingCluster, size: int) -> datetime:
    """Data, a full backup, writes after it, the target in their middle, WAL archived."""
    url = arch.cluster.create_database("bench")
    with connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz)")
        create_tables(conn, "public")
    fill(url, size)
    arch.backup()
    with connect(url, autocommit=True) as conn:
        for _ in range(200):
            conn.execute("INSERT INTO ticks (at) VALUES (clock_timestamp())")
        target = datetime.now(UTC)
        conn.execute("UPDATE orders SET total_cents = total_cents + 1")  # WAL after the target
    arch.archive_now()
    return target


def by_hand(arch: ArchivingCluster, label: str, target: datetime, datadir: Path) -> float:
    pitr = arch.pitr()
    started = time.monotonic()
    proc = arch.tool().spawn(
        "restore",
        "--type=time",
        f"--target={pg_target(target)}",
        "--target-action=promote",
        f"--set={label}",
        f"--pg1-path={datadir}",
    )
    finish(proc, "pgbackrest restore")
    port = ops.free_port("127.0.0.1")
    ops.start_candidate(pitr, datadir, port)
    ops.wait_promoted(ops.url_at(arch.cluster.url("bench"), "127.0.0.1", port), 600, lambda: None)
    return time.monotonic() - started


def by_rollbot(arch: ArchivingCluster, target: datetime) -> tuple[float, Path]:
    env = EnvironmentConfig(
        name="bench", tier="staging", database_url_env=URL_VAR, pitr=arch.pitr()
    )
    ctx = StepContext(0, Settings(), env, lambda _t: None, lambda *_a: None)
    step = build_step("pgbackrest.restore", {"restore_to": target.isoformat()})
    pinned = build_step("pgbackrest.restore", step.pin(ctx))  # type: ignore[attr-defined]
    started = time.monotonic()  # the plan (pin) is made before approval: not the restore's time
    result = pinned.run(ctx)
    seconds = time.monotonic() - started
    assert result.ok, result.summary
    return seconds, Path(result.data["candidate"]["data_directory"])


def clean(arch: ArchivingCluster, datadir: Path) -> None:
    ops.stop(arch.pitr(), datadir, "immediate")
    shutil.rmtree(datadir, ignore_errors=True)
    ops.log_path(datadir).unlink(missing_ok=True)


def main() -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="100MB", help="generated data (default 100MB)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    register_provider_steps()
    with ArchivingCluster() as arch:
        os.environ[URL_VAR] = arch.cluster.url("bench")
        target = prepare(arch, parse_size(args.size))
        label = arch.tool().info()["backup"][-1]["label"]
        hand, bot = [], []
        for n in range(args.repeat):
            datadir = arch.cluster.datadir.with_name(f"hand{n}")
            hand.append(by_hand(arch, label, target, datadir))
            clean(arch, datadir)
            seconds, datadir = by_rollbot(arch, target)
            bot.append(seconds)
            clean(arch, datadir)
            time.sleep(1)  # the restore directory is named to the second
        h, b = statistics.median(hand), statistics.median(bot)
        print(f"backup set {label}, target {target:%H:%M:%S.%f} UTC, {args.repeat} runs")
        print(f"by hand (pgbackrest restore + start + promote): median {h:.2f}s  {hand}")
        print(f"rollbot pgbackrest.restore step:                median {b:.2f}s  {bot}")
        print(f"ratio rollbot / by hand: {b / h:.2f}x (goal <= 1.1x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
