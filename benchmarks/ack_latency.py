"""Ack latency of the Slack app: rollbot beside a bare Bolt app, while a restore runs.

    uv run python benchmarks/ack_latency.py [--rows 1000000] [--requests 200]

Both apps are served the same way (gunicorn ``gthread`` workers, HTTP,
``/slack/events``) and get the same signed requests: the ``/rollback`` slash
command and a button click, sequentially and 20 at a time. rollbot is first
driven through a real incident (production -> data corruption -> restore ->
approval -> run) so that a ``pg_restore`` of a generated database runs in its
background while we measure. Prints p50/p99 per case and the ratio to bare Bolt
(targets: p99 under 100 ms at 20 concurrent, within 1.5x of bare Bolt).
On demand only; not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bot.config import load_settings  # noqa: E402
from handlers.slack.metadata import ActionValue, new_nonce  # noqa: E402
from providers.postgres.cluster import ThrowawayCluster, free_port  # noqa: E402
from providers.postgres.snapshot import create_snapshot  # noqa: E402
from providers.postgres.steps import storage_of  # noqa: E402
from tests.slack.conftest import (  # noqa: E402
    BOB,
    DBA_GROUP,
    MALLORY,
    REQUESTER,
    _spawn,
    _stop,
    _wait_port,
    served_env,
    write_slack_config,
)
from tests.slack.driver import HttpTransport, SlackDriver  # noqa: E402
from tests.slack.fake_slack import FakeSlack  # noqa: E402
from tests.slack.signing import block_action_payload, command_body, form, post_signed  # noqa: E402

CONCURRENCY = 20


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(send: Callable[[int], float], total: int, concurrency: int) -> list[float]:
    if concurrency == 1:
        return [send(i) for i in range(total)]
    out: list[float] = []
    with ThreadPoolExecutor(concurrency) as pool:
        for start in range(0, total, concurrency):
            barrier = threading.Barrier(concurrency)

            def one(i: int, barrier: threading.Barrier = barrier) -> float:
                barrier.wait()
                return send(i)

            out += list(pool.map(one, range(start, start + concurrency)))
    return out


def seed(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id bigint primary key, balance int, note text)")
        conn.execute(
            "INSERT INTO accounts SELECT g, 100, md5(g::text) || md5((g * 7)::text) "
            "FROM generate_series(1, %s) g",
            (rows,),
        )


def start_restore(driver: SlackDriver) -> int:
    card = driver.open_card(REQUESTER, "production benchmark restore in the background")
    driver.wait_card(card, lambda t: "rb_answer:data_corruption" in t, "question")
    driver.click(REQUESTER, card, "rb_answer:data_corruption")
    driver.wait_card(card, lambda t: "rb_choose:pitr" in t, "recommendation")
    driver.click(REQUESTER, card, "rb_choose:pitr")
    driver.wait_state(card, "method_chosen")
    driver.click(REQUESTER, card, "rb_request_approval")
    driver.wait_state(card, "awaiting_approval")
    driver.click(BOB, card, "rb_approve")
    driver.wait_card(card, lambda t: "rb_run:" in t, "run button")
    driver.click(REQUESTER, card, "rb_run")
    driver.wait_state(card, "running")
    return card.incident_id


def senders(url: str, incident_id: int) -> dict[str, Callable[[int], float]]:
    def command(i: int) -> float:
        body = urlencode(command_body(REQUESTER, f"production bench command {i}"))
        reply = post_signed(url, body, "application/x-www-form-urlencoded")
        assert reply.status == 200, reply
        return reply.elapsed

    def click(i: int) -> float:
        value = ActionValue(incident_id, nonce=new_nonce())
        action = {
            "type": "button",
            "action_id": "rb_approve:go",
            "block_id": "b",
            "value": value.encode(),
        }
        payload = block_action_payload(MALLORY, action, "C0INCIDENTS", "1.000001", "1.000001")
        reply = post_signed(url, form(payload), "application/x-www-form-urlencoded")
        assert reply.status == 200, reply
        return reply.elapsed

    return {"slash command": command, "button click": click}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the restored table")
    parser.add_argument("--requests", type=int, default=200, help="requests per case")
    args = parser.parse_args()

    fake = FakeSlack().start()
    fake.groups[DBA_GROUP] = [BOB]
    with ThrowawayCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prod = cluster.create_database("bench_prod")
        print(f"seeding {args.rows:,} rows and taking a snapshot ...", flush=True)
        seed(prod, args.rows)
        config = write_slack_config(folder)
        env = load_settings(config).environment("production")
        create_snapshot(prod, storage_of(env), migrations_table=env.migrations_table)

        environ = served_env(fake, prod)
        rollbot_port, bare_port = free_port(), free_port()
        rollbot = _spawn(
            [
                "--config",
                str(config),
                "serve",
                "--http",
                "--host",
                "127.0.0.1",
                "--port",
                str(rollbot_port),
            ],
            environ,
            folder / "rollbot.log",
        )
        bare_log = (folder / "bare.log").open("wb")
        bare = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "16", "-w", "1",
                "-b", f"127.0.0.1:{bare_port}", "benchmarks.bare_bolt:application",
            ],
            cwd=ROOT, env=environ, stdout=bare_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_port(rollbot_port, rollbot, folder / "rollbot.log")
            _wait_until_up(bare_port, bare)
            driver = SlackDriver(
                fake,
                HttpTransport(f"http://127.0.0.1:{rollbot_port}"),
                config,
                folder / "rollbot.log",
            )
            incident_id = start_restore(driver)
            print(f"restore of INC-{incident_id} running in rollbot's background", flush=True)
            # The client measures from its own process: the fake Slack answering rollbot's
            # background posts must not steal this process's time from the measurement.
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(1) as pool:
                results = pool.apply(
                    run_cases, (rollbot_port, bare_port, incident_id, args.requests)
                )
            state = driver.bot.get(incident_id).state
            print(f"\nINC-{incident_id} was {state} when measuring ended", flush=True)
        finally:
            _stop(rollbot)
            _stop(bare)
            fake.stop()
    report(results)
    return 0


def _wait_until_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the bare Bolt app did not start")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit("the bare Bolt app did not come up")


Results = dict[tuple[str, str, str], list[float]]


def run_cases(rollbot_port: int, bare_port: int, incident_id: int, total: int) -> Results:
    results: Results = {}
    apps = {
        "rollbot": f"http://127.0.0.1:{rollbot_port}/slack/events",
        "bare Bolt": f"http://127.0.0.1:{bare_port}/slack/events",
    }
    for app_name, url in apps.items():
        for case, send in senders(url, incident_id).items():
            for _ in range(5):
                send(0)  # warm up connections, caches, imports
            for label, concurrency in (
                ("sequential", 1),
                (f"{CONCURRENCY} concurrent", CONCURRENCY),
            ):
                results[(app_name, case, label)] = measure(send, total, concurrency)
    return results


def report(results: Results) -> None:
    ms = 1000.0
    print(
        f"\n{'case':<38}{'rollbot p50/p99 ms':>22}{'bare p50/p99 ms':>20}{'p50 x':>8}{'p99 x':>8}"
    )
    summary: dict[str, bool] = {}
    for case in ("slash command", "button click"):
        for label in ("sequential", f"{CONCURRENCY} concurrent"):
            r, b = results[("rollbot", case, label)], results[("bare Bolt", case, label)]
            rp50, rp99 = percentile(r, 50) * ms, percentile(r, 99) * ms
            bp50, bp99 = percentile(b, 50) * ms, percentile(b, 99) * ms
            print(
                f"{case + ', ' + label:<38}{rp50:>10.1f} / {rp99:<9.1f}{bp50:>8.1f} / {bp99:<9.1f}"
                f"{rp50 / bp50:>7.2f}x{rp99 / bp99:>7.2f}x"
            )
            if label != "sequential":
                summary[f"{case}: p99 {rp99:.1f} ms < 100 ms at {CONCURRENCY} concurrent"] = (
                    rp99 < 100
                )
                summary[f"{case}: p99 within 1.5x of bare Bolt ({rp99 / bp99:.2f}x)"] = (
                    rp99 <= 1.5 * bp99
                )
    print()
    for line, ok in summary.items():
        print(f"{'PASS' if ok else 'MISS'}  {line}")
    mean = statistics.mean(v for vals in results.values() for v in vals) * ms
    print(
        json.dumps(
            {"requests_measured": sum(len(v) for v in results.values()), "mean_ms": round(mean, 2)}
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
