"""The worker's CPU per inbox row, with nothing else running: the figure `load.py` cannot give.

    uv run python benchmarks/worker_cpu.py [--seconds 40] [--rate 0.4] [--clients 20]

Under `load.py` the worker shares two CPUs with a restore, so its CPU per row moves with
whatever else the machine does (runs of one code base differed by a third). Here one
``rollbot serve --http`` (SQLite state, the production target a small PostgreSQL database,
no restore) gets `load.py`'s mix of slash commands and clicks at a slow rate it keeps up
with. Printed: the worker's idle CPU (its polling), then its CPU per inbox row above idle,
the ack side's CPU per request beside bare Bolt's (measured first, the same mix at the same
rate), and the mix. Compare two trees by running each, in turns.
On demand only; not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # benchmarks/load.py: its clients, fake Slack and helpers

IDLE_SECONDS = 15.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_card(db: load.StateDb, timeout: float = 30) -> load.CardRef:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = db.rows(
            "SELECT id, chat_channel, chat_message, chat_thread FROM incidents "
            "WHERE chat_message IS NOT NULL ORDER BY id"
        )
        if rows:
            incident_id, channel, ts, thread = rows[0]
            return load.CardRef(incident_id, channel, ts, thread)
        time.sleep(0.1)
    raise RuntimeError("the first incident's card never appeared")


def bare_ack_cpu(
    args: argparse.Namespace, fake: load.FakeSlack, prod: str, card: load.CardRef, folder: Path
) -> float:
    """Bare Bolt's CPU per request (ms) under the same mix and rate, served the same way: in
    a stampede of requests the last waits for the CPU of all the others, so this ratio sets
    how far rollbot's p99 can come to bare Bolt's there (docs/architecture.md item 53)."""
    bare = load.BareBolt.start(load.served_env(fake, prod), folder / "bare.log")
    try:
        dummy = b"bare bolt checks no seal"
        url = load._url(bare.port)
        load.warm_up([url], card, dummy)

        def used() -> float:
            return sum(cpu_seconds(p) for p in [bare.proc.pid, *load.descendants(bare.proc.pid)])

        before = used()
        spec = load.ClientSpec(
            "bare", (url,), tuple(range(args.clients)), time.time() + 0.5, args.seconds,
            dummy.hex(), card, None, rate=args.rate,
        )  # fmt: skip
        samples, _ = load.run_clients(spec)
        return round(1000 * (used() - before) / max(len(samples), 1), 2)
    finally:
        bare.stop()


def measure(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    fake = load.FakeSlack().start()
    fake.groups[load.DBA_GROUP] = [load.BOB]
    cluster = load.ThrowawayCluster()
    cluster.start()
    served = None
    try:
        cluster.create_database("seed")
        load.seed(cluster.url("seed"), 20_000)
        prod = load.clone_database(cluster, "seed", "prod_one")
        load.snapshot(folder, prod, sqlite=True)
        served = load.serve(fake, prod, folder, "http", sqlite=True)
        db = load.StateDb(f"sqlite:///{folder / 'state.db'}")
        key, url = db.signing_key(), load._url(served.port or 0)
        body = load.command_body(load.REQUESTER, "production worker-cpu target", trigger="t.0")
        load.post_signed(url, urlencode(body), load.FORM)
        card = first_card(db)
        load.warm_up([url], card, key)
        worker, acks = served.worker_pid(), served.proc.pid  # type: ignore[union-attr]
        assert worker is not None

        def ack_side() -> float:
            return sum(cpu_seconds(p) for p in [acks, *load.descendants(acks)] if p != worker)

        wait_drained_ok = load.wait_drained(db, 60)[0]
        bare_ms = bare_ack_cpu(args, fake, prod, card, folder)
        idle_start = cpu_seconds(worker)
        time.sleep(IDLE_SECONDS)
        idle = (cpu_seconds(worker) - idle_start) / IDLE_SECONDS
        worker0, acks0, t0 = cpu_seconds(worker), ack_side(), time.monotonic()
        spec = load.ClientSpec(
            "cpu", (url,), tuple(range(args.clients)), time.time() + 0.5, args.seconds,
            key.hex(), card, db.url, rate=args.rate,
        )  # fmt: skip
        samples, _ = load.run_clients(spec)
        drained = load.wait_drained(db, 120)[0] and wait_drained_ok
        time.sleep(1.0)  # the last row's posts
        took = time.monotonic() - t0
        used = cpu_seconds(worker) - worker0 - idle * took
        db.dispose()
        n = len(samples)
        return {
            "worker idle CPU (share of one core)": round(idle, 4),
            "worker CPU per inbox row above idle (ms)": round(1000 * used / n, 2),
            "ack side CPU per request (ms)": (ack_ms := round(1000 * (ack_side() - acks0) / n, 2)),
            "bare Bolt CPU per request (ms)": bare_ms,
            "ack side CPU / bare Bolt's": round(ack_ms / bare_ms, 2) if bare_ms else None,
            "requests": n,
            "mix": dict(Counter(s[0] for s in samples)),
            "drained": drained,
        }
    finally:
        if served is not None:
            served.kill()
        fake.stop()
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--rate", type=float, default=0.4, help="requests/s per client")
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    print(load.tree_state(), flush=True)
    folder = Path(tempfile.mkdtemp(prefix="rollbot-worker-cpu-"))
    try:
        print(json.dumps(measure(args, folder), indent=1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
