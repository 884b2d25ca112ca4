"""Load on the Slack HTTP app while a restore runs: one process, two replicas, bare Bolt.

    uv run python benchmarks/load.py [--seconds 60] [--clients 20] [--rate 5] [--rows 2000000]
                                     [--one-state sqlite|postgres] [--skip-replicas]
                                     [--worker-cpu low|idle] [--fake-slack-nice 10]
                                     [--arrivals poisson|burst]

``--clients`` concurrent clients post a mix of signed ``/rollback production <marker>``
slash commands and button clicks to ``/slack/events`` for ``--seconds``, each
``--rate`` requests per second on a schedule (open loop, as Slack sends: a late reply
does not delay the next request, and a request sent late counts its wait; ``--arrivals
poisson``, the default: at random gaps, each client independently, as people click;
``burst``: all clients at the same instants, a stampede every ``1/rate`` s), or with
``--rate 0`` as fast as replies come (closed loop: it measures throughput, and the ack
latency then mostly says how long requests queued):

* clicks that do work: *answer* (data corruption) and *cancel* on the incidents the
  client's own commands opened, sealed with the installation's real key and posted
  with the card's channel and ts (found in the state database, as Slack would have
  them from the card);
* an unauthorized *approve* by a stranger on the restore incident's card (recorded,
  then refused by the worker), and a click whose value was tampered with.

Cases, one after the other in the same run, each while a PostgreSQL restore of a
generated database (``--rows``; 2M rows restore in ~15-25 s here) runs in rollbot's
worker. The first restore of a case is driven through the real Slack flow
(production -> data corruption -> PITR -> approval by a DBA -> run); one that ends while
the clients run is followed at once by another queued through the core, as from the
CLI (the worker picks queued plans up within seconds, whatever its inbox holds):

* **one process**: one ``rollbot serve --http`` and its worker (state in SQLite by
  default, ``--one-state postgres`` for PostgreSQL);
* **bare Bolt**: ``benchmarks/bare_bolt.py`` (ack only) under gunicorn gthread, 16
  threads, the baseline, on the same transport with the same mix, beside the restores
  of the one-process rollbot (which gets no requests meanwhile);
* **two replicas**: two ``rollbot serve --http`` on two ports, each with its worker,
  sharing one PostgreSQL state database; the clients alternate between them.

Prints per case: requests, throughput, ack p50/p99/max, requests over 3 s,
acknowledged, not recorded ("... was *not recorded* ..."), completed (after the
workers drained the inbox: each acknowledged command opened exactly one incident with
its marker, each acknowledged click has a finished inbox row) and the RSS of each
served process tree at start and end (the restore's pg_dump/pg_restore left out); then
PASS/MISS per goal (ack p99 < 100 ms and <= 1.5x bare Bolt, no request over 3 s,
completed = acknowledged). Below the table, per case: the mix, p50/p99 per kind and
replica, why requests were not recorded, how fast the worker(s) drained the inbox,
which processes used the CPU while measuring (and a warning when processes outside
the benchmark used much of it), new connections to a PostgreSQL state database, the
restores, and ERROR/WARNING lines of the served logs. The exit code is 0 on MISS (this
is a measurement) and non-zero only when the benchmark itself broke.
On demand only; not part of the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bot.service import Rollbot  # noqa: E402
from bot.store import Store, normalise_url  # noqa: E402
from handlers.runtime import load_config  # noqa: E402
from handlers.scheduling import ask_for_short_slices  # noqa: E402
from handlers.slack.flows import SIGNING_KEY  # noqa: E402
from handlers.slack.metadata import ActionValue, ValueSigner, new_nonce  # noqa: E402
from providers.postgres.cluster import ThrowawayCluster, free_port  # noqa: E402
from providers.postgres.snapshot import create_snapshot  # noqa: E402
from providers.postgres.steps import storage_of  # noqa: E402
from tests.slack.driver import Card, SlackDriver, blocks_text  # noqa: E402
from tests.slack.fake_slack import CHANNELS, FakeSlack  # noqa: E402
from tests.slack.serving import (  # noqa: E402
    BOB,
    DBA_GROUP,
    MALLORY,
    REQUESTER,
    Served,
    children,
    serve,
    served_env,
    write_slack_config,
)
from tests.slack.signing import block_action_payload, command_body, form, post_signed  # noqa: E402

FORM = "application/x-www-form-urlencoded"
RECORDED_TEXT = "Opening an incident"
NOT_RECORDED_TEXT = "not recorded"
SLOW = 3.0  # seconds: Slack gives up on an ack after 3 s
UNFINISHED = ("pending", "claimed")
TOOLS = ("pg_dump", "pg_restore", "psql")  # the restore's client tools, not rollbot's memory
QUESTION_BLOCK = "rb_question:production_problem"
MARKER = re.compile(r"\b([a-z]+-c\d+-n\d+)\b")


# ---------------------------------------------------------------- small helpers
def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def rss_mb(root_pid: int) -> float:
    """VmRSS of ``root_pid`` and its descendants (the restore's client tools left out)."""
    total_kb = 0
    for pid in [root_pid, *descendants(root_pid)]:
        if _comm(pid) in TOOLS:
            continue
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def tools_running(root_pids: Iterable[int]) -> bool:
    return any(_comm(p) in TOOLS for r in root_pids for p in descendants(r))


HZ = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used during a measurement, by whom (all of /proc, sampled every 0.5 s).

    ``roots`` names process trees (a pid and its descendants); PostgreSQL's backends
    and the restore's client tools are told apart by their command name. A process
    that lived less than one sampling interval is missed (approximate by design).
    """

    def __init__(self, roots: dict[int, str]) -> None:
        self.roots = roots
        self.used: Counter[str] = Counter()
        self._last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = 0.0

    @staticmethod
    def _scan() -> dict[int, tuple[str, int, int, int]]:
        """pid -> (comm, ppid, utime + stime, starttime), in clock ticks."""
        out = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            f = raw.rsplit(")", 1)[1].split()
            out[int(entry.name)] = (comm, int(f[1]), int(f[11]) + int(f[12]), int(f[19]))
        return out

    def _who(self, pid: int, procs: dict[int, tuple[str, int, int, int]]) -> str:
        comm = procs[pid][0]
        if comm in TOOLS:
            return "pg_dump/pg_restore"
        if comm == "postgres":
            return "PostgreSQL (restore + state)"
        seen = 0
        while pid in procs and seen < 50:
            if pid in self.roots:
                return self.roots[pid]
            pid, seen = procs[pid][1], seen + 1
        return f"other: {comm}"

    def _sample(self, first: bool) -> None:
        procs = self._scan()
        boot_ticks = float(Path("/proc/uptime").read_text().split()[0]) * HZ
        for pid, (_comm, _ppid, ticks, started) in procs.items():
            if pid not in self._last:
                # Seen for the first time: count all of it if it started after we did.
                base = 0 if not first and started >= self._t0 else ticks
                self._last[pid] = base
            delta = ticks - self._last[pid]
            if delta > 0:
                self.used[self._who(pid, procs)] += delta / HZ
            self._last[pid] = ticks
        if first:
            self._t0 = boot_ticks

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample(False)

    def start(self) -> CpuMeter:
        self._sample(True)
        self._thread.start()
        return self

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        self._sample(False)
        total = sum(self.used.values())
        used = Counter({k: v for k, v in self.used.items() if not k.startswith("other")})
        used["other"] = total - sum(used.values())
        parts = ", ".join(f"{k} {v:.1f}" for k, v in used.most_common() if v >= 0.05)
        others = sorted(
            ((v, k) for k, v in self.used.items() if k.startswith("other")), reverse=True
        )
        if others:
            parts += "; other: " + ", ".join(f"{k[7:]} {v:.1f}" for v, k in others[:4])
        line = f"CPU s used while measuring: {total:.1f} ({parts})"
        if used["other"] > 0.1 * total:
            line += (
                "\n  WARNING: processes outside this benchmark used "
                f"{used['other'] / total:.0%} of the CPU: the numbers are disturbed"
            )
        return line


class SchedulingMeter:
    """How an acknowledging process's threads were scheduled while measuring (Linux schedstat).

    The time an ack spends outside the app is mostly time its threads wait for a CPU
    after waking up; this says how much, per request, and how often they woke
    (voluntary switches: a thread blocked, on the GIL, a lock or I/O; involuntary: it
    was preempted). Threads that end while measuring are left out.
    """

    def __init__(self, pids: Iterable[int], who: str = "ack side") -> None:
        self.pids = list(pids)
        self.who = who
        self._start = self._read()

    def _read(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for pid in self.pids:
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(OSError, ValueError):
                        run, wait, _ = (task / "schedstat").read_text().split()
                        status = (task / "status").read_text()
                        total["run"] += int(run)
                        total["wait"] += int(wait)
                        for key in ("voluntary", "nonvoluntary"):
                            m = re.search(rf"^{key}_ctxt_switches:\s+(\d+)", status, re.M)
                            total[key] += int(m.group(1)) if m else 0
        return total

    def note(self, requests: int) -> str:
        d = self._read()
        d.subtract(self._start)
        n = max(requests, 1)
        return (
            f"{self.who} scheduling per request: {d['wait'] / 1e6 / n:.2f} ms waiting for a CPU, "
            f"{d['run'] / 1e6 / n:.2f} ms on one, {d['voluntary'] / n:.1f} voluntary and "
            f"{d['nonvoluntary'] / n:.1f} involuntary context switches"
        )


def ack_side_pids(served: Iterable[Served]) -> list[int]:
    """The processes that acknowledge (gunicorn's), not the worker nor the restore's tools."""
    pids = []
    for s in served:
        assert s.proc is not None
        worker = worker_of(s)
        skip = {worker, *descendants(worker)} if worker is not None else set()
        pids += [p for p in [s.proc.pid, *descendants(s.proc.pid)] if p not in skip]
    return pids


class StateDb:
    """Read-only queries on a served app's state database (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            self.engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
            # On SQLite the inbox has a file of its own (bot.store).
            self.inbox_engine = create_engine(f"sqlite:///file:{path}-inbox?mode=ro&uri=true")
        else:
            self.engine = create_engine(normalise_url(url), pool_size=2, max_overflow=2)
            self.inbox_engine = self.engine

    def rows(self, sql: str, **params: Any) -> list[Any]:
        engine = self.inbox_engine if " FROM inbox" in sql else self.engine
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def scalar(self, sql: str, **params: Any) -> Any:
        rows = self.rows(sql, **params)
        return rows[0][0] if rows else None

    def unfinished(self) -> int:
        return int(self.scalar("SELECT count(*) FROM inbox WHERE status IN ('pending','claimed')"))

    def running_incidents(self) -> int:
        return int(self.scalar("SELECT count(*) FROM incidents WHERE state = 'running'"))

    def state_of(self, incident_id: int) -> str | None:
        return self.scalar("SELECT state FROM incidents WHERE id = :i", i=incident_id)

    def signing_key(self, timeout: float = 60) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.scalar(
                "SELECT value FROM installation_secrets WHERE name = :n", n=SIGNING_KEY
            )
            if value:
                return bytes.fromhex(value)
            time.sleep(0.2)
        raise RuntimeError("the worker did not create the button-signing key")

    def dispose(self) -> None:
        self.engine.dispose()
        self.inbox_engine.dispose()


# ---------------------------------------------------------------- the clients (own processes)
@dataclass(frozen=True)
class CardRef:
    incident_id: int
    channel: str
    ts: str
    thread_ts: str


@dataclass(frozen=True)
class ClientSpec:
    tag: str  # the case: markers are "<tag>-c<client>-n<request>"
    urls: tuple[str, ...]
    clients: tuple[int, ...]  # the client numbers this process runs
    start_at: float  # time.time() when every client starts
    seconds: float
    key_hex: str  # the installation's button-signing key (a dummy one for bare Bolt)
    restore_card: CardRef
    state_url: str | None  # where to find the cards of the clients' incidents (None: bare)
    seed: int = 1
    rate: float = 0.0  # requests per second per client (open loop); 0: closed loop, flat out
    arrivals: str = "poisson"  # open loop: "poisson" (independent people) or "burst"


# kind, start (s after start_at), latency (s), HTTP status, outcome, key, marker, url index
Sample = tuple[str, float, float, int, str, str, str, int]


class Cards:
    """The cards of the incidents the clients' commands opened, as they appear.

    Against rollbot: read from its state database every 0.25 s (the card's channel and
    ts, as Slack would give them back on a click). Against bare Bolt there is no work:
    each acknowledged command gets a made-up card at once, so the mix is the same.
    """

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.mine: dict[int, deque[CardRef]] = {n: deque() for n in spec.clients}
        self.lock = threading.Lock()
        self.db = StateDb(spec.state_url) if spec.state_url else None
        self._fake_ids = iter(range(10**6, 10**7))

    def opened(self, client: int) -> None:
        if self.db is None:
            with self.lock:
                fake_id = next(self._fake_ids)
                ts = f"{time.time():.6f}"
                self.mine[client].append(CardRef(fake_id, CHANNELS["#incidents"], ts, ts))

    def poll(self, stop: threading.Event) -> None:
        if self.db is None:
            return
        low, seen = 0, set()
        prefix = f"{self.spec.tag}-c"
        while not stop.wait(0.25):
            try:
                rows = self.db.rows(
                    "SELECT id, description, chat_channel, chat_message, chat_thread "
                    "FROM incidents WHERE id > :low AND chat_message IS NOT NULL ORDER BY id",
                    low=low,
                )
            except Exception:  # the state database is busy: look again
                continue
            for incident_id, description, channel, message, thread in rows:
                if incident_id in seen:
                    continue
                seen.add(incident_id)
                m = MARKER.search(description or "")
                if not m or not m.group(1).startswith(prefix):
                    continue
                client = int(m.group(1).split("-")[1][1:])
                if client in self.mine:
                    with self.lock:
                        self.mine[client].append(CardRef(incident_id, channel, message, thread))
            if seen:
                low = max(0, max(seen) - 100)

    def take(self, client: int) -> CardRef | None:
        with self.lock:
            queue = self.mine[client]
            return queue.popleft() if queue else None


def _why(text_: str) -> str:
    """Which "not recorded": the inbox over its high-water mark, or the database away."""
    if "too much unfinished work" in text_:
        return " (inbox full)"
    if "cannot reach its database" in text_:
        return " (database)"
    return ""


def _click(user: str, card: CardRef, action_id: str, block_id: str, value: str) -> str:
    action = {
        "type": "button",
        "action_id": action_id,
        "block_id": block_id,
        "value": value,
        "text": {"type": "plain_text", "text": action_id, "emoji": True},
    }
    return form(block_action_payload(user, action, card.channel, card.ts, card.thread_ts))


def send_times(spec: ClientSpec, n: int) -> Iterator[float]:
    """When client ``n`` sends each request (``time.time()``). ``poisson``: at random gaps
    of mean ``1/rate``, independently of the other clients, as people click. ``burst``: all
    clients at the same instants, every ``1/rate`` s (20 requests within a few ms: a
    stampede, whose p99 is how long the last of them waits for the others)."""
    if not spec.rate:
        while True:
            yield time.time()
    if spec.arrivals == "burst":
        for i in itertools.count():
            yield spec.start_at + i / spec.rate
    gaps = random.Random(f"arrivals-{spec.seed}-{n}")  # the same schedule in every case
    due = spec.start_at
    while True:
        due += gaps.expovariate(spec.rate)
        yield due


def _one_client(spec: ClientSpec, n: int, cards: Cards, out: list[Sample], deadline: float) -> None:
    """Half commands; half clicks: answer / cancel own incidents, stranger, tampered value."""
    rng = random.Random(spec.seed * 1000 + n)
    signer = ValueSigner(bytes.fromhex(spec.key_hex))
    forger = ValueSigner(b"not the installation's key")
    user = f"U0LOAD{n:02d}"
    answered: deque[CardRef] = deque()
    i = 0
    schedule = send_times(spec, n)
    while time.time() < deadline:
        due = next(schedule)
        if due > deadline:
            break
        time.sleep(max(0.0, due - time.time()))  # open loop: on its schedule, not on replies
        url_index = (n + i) % len(spec.urls)
        r = rng.random()
        nonce, marker = new_nonce(), ""
        card: CardRef | None = None
        if r < 0.5:
            kind = "command"
            marker = f"{spec.tag}-c{n:02d}-n{i:06d}"
            text_ = f"production load {marker}"
            body = urlencode(command_body(user, text_, trigger=f"trig.{marker}"))
            key = f"slack:command:trig.{marker}"
        else:
            if r < 0.75:
                card = cards.take(n)
                kind, clicker, block_id = "answer", user, QUESTION_BLOCK
                action_id, arg, seal = "rb_answer:data_corruption", "data_corruption", signer
            elif r < 0.9 and answered:
                card = answered.popleft()
                kind, clicker, action_id, block_id = "cancel", user, "rb_cancel:go", "rb_controls"
                arg, seal = "", signer
            if card is None and r < 0.95:  # also when there is nothing of one's own to click
                kind, card, clicker = "unauthorized", spec.restore_card, MALLORY
                action_id, block_id, arg, seal = "rb_approve:go", "rb_approval", "", signer
            elif card is None:
                kind, card, clicker = "tampered", spec.restore_card, user
                action_id, block_id, arg, seal = "rb_cancel:go", "rb_controls", "", forger
            value = ActionValue(card.incident_id, arg=arg, nonce=nonce).encode(seal, action_id)
            body = _click(clicker, card, action_id, block_id, value)
            key = f"slack:click:{nonce}:{clicker}:{action_id}"
        started = time.time()
        t0 = time.perf_counter()
        try:
            reply = post_signed(spec.urls[url_index], body, FORM)
            # Behind schedule, the wait for the send counts too (no coordinated omission).
            status, reply_text = reply.status, reply.body
            latency = reply.elapsed + max(0.0, started - due)
        except Exception as exc:  # a timeout or a refused connection: a failed request
            status, reply_text, latency = 0, type(exc).__name__, time.perf_counter() - t0
        outcome = ""
        if status != 200:
            outcome = f"HTTP {status} {reply_text[:60]}"
        elif kind == "command":
            if RECORDED_TEXT in reply_text:
                outcome = "recorded"
            elif NOT_RECORDED_TEXT in reply_text:
                outcome = "not recorded" + _why(reply_text)
            elif spec.state_url is None and not reply_text.strip():
                outcome = "recorded"  # bare Bolt acks with an empty body
            else:
                outcome = f"other: {reply_text[:80]}"
            if outcome == "recorded":
                cards.opened(n)
        elif kind == "answer" and card is not None:
            answered.append(card)
        out.append(
            (kind, started - spec.start_at, latency, status, outcome, key, marker, url_index)
        )
        i += 1


def _own_schedstat() -> tuple[int, int]:
    """This thread's time on a CPU and waiting for one, in ns (Linux), or zeros."""
    try:
        run, wait, _ = Path("/proc/thread-self/schedstat").read_text().split()
    except (OSError, ValueError):
        return 0, 0
    return int(run), int(wait)


def run_clients(spec: ClientSpec) -> tuple[list[Sample], tuple[int, int]]:
    """One client process: ``len(spec.clients)`` threads, each a closed-loop client.

    The clients stand in for Slack, which does not share the served app's CPUs: they ask
    for short slices (as rollbot's ack side does), so that the wait for a CPU to read a
    reply does not count as the app's latency, for bare Bolt and rollbot alike."""
    ask_for_short_slices()  # the threads below inherit it
    cards = Cards(spec)
    stop = threading.Event()
    poller = threading.Thread(target=cards.poll, args=(stop,), daemon=True)
    poller.start()
    results: dict[int, list[Sample]] = {n: [] for n in spec.clients}
    time.sleep(max(0.0, spec.start_at - time.time()))
    deadline = spec.start_at + spec.seconds

    def client(n: int) -> None:
        run0, wait0 = _own_schedstat()
        _one_client(spec, n, cards, results[n], deadline)
        run1, wait1 = _own_schedstat()
        waited[n] = (run1 - run0, wait1 - wait0)

    waited: dict[int, tuple[int, int]] = {}
    threads = [threading.Thread(target=client, args=(n,)) for n in spec.clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    scheduled = (sum(r for r, _ in waited.values()), sum(w for _, w in waited.values()))
    return [s for n in spec.clients for s in results[n]], scheduled


def _own_session() -> None:
    """A client process's pool initializer: the clients stand in for Slack's senders, so
    they get a session of their own. Linux shares the CPUs between sessions' groups
    (autogroup), and in the benchmark's session the fake Slack Web API, which stands in
    for Slack's servers, spends CPU answering rollbot's worker (bare Bolt makes no calls):
    a client sharing that group waited longer to read rollbot's acks than bare Bolt's."""
    os.setsid()


def _ping(_: int) -> int:
    time.sleep(0.5)  # so that every process of the pool takes one
    return os.getpid()


# ---------------------------------------------------------------- driving a restore
def _card_text(fake: FakeSlack, card: Card) -> str:
    return blocks_text(fake.messages[(card.channel, card.ts)]["blocks"])


def _wait(fake: FakeSlack, predicate: Callable[[], Any], timeout: float) -> Any:
    try:
        return fake.wait_for(lambda _f: predicate(), timeout=timeout, what="a card change")
    except AssertionError:
        return None


def drive_restore(driver: SlackDriver, label: str, stop: threading.Event, timeout: float) -> Card:
    """A real incident through the Slack flow until its PITR plan runs (clicks retried if
    they were not recorded or not handled in time, e.g. behind a full inbox)."""
    fake = driver.fake
    deadline = time.monotonic() + timeout
    card: Card | None = None
    while card is None:
        if stop.is_set() or time.monotonic() > deadline:
            raise TimeoutError(f"the {label!r} incident was not opened in time")
        reply = driver.rollback(REQUESTER, f"production {label}")
        if NOT_RECORDED_TEXT in reply.body or reply.status != 200:
            stop.wait(1.0)  # the inbox is full (or the database away): ask again
            continue
        while card is None and not stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):  # it waits 20 s at a time
                card = driver.wait_card_for(label)

    def state(s: str) -> Callable[[str], bool]:
        return lambda t: f"*INC-{card.incident_id}*" in t and f"· {s.replace('_', ' ')}" in t

    steps: list[tuple[str, str, Callable[[str], bool]]] = [
        (REQUESTER, "rb_answer:data_corruption", lambda t: "rb_choose:pitr" in t),
        (REQUESTER, "rb_choose:pitr", state("method_chosen")),
        (REQUESTER, "rb_request_approval", state("awaiting_approval")),
        (BOB, "rb_approve", lambda t: "rb_run:" in t),
        (REQUESTER, "rb_run", state("running")),
    ]
    for user, prefix, done in steps:
        while not done(_card_text(fake, card)):
            if stop.is_set() or time.monotonic() > deadline:
                raise TimeoutError(f"the {label} incident got stuck before {prefix}")
            with contextlib.suppress(AssertionError):  # no such button (yet): it is changing
                driver.click(user, card, prefix)
            _wait(fake, lambda done=done: done(_card_text(fake, card)), 20)
    return card


class _Dbas:
    """The approvers' user group, for the core used directly (as the CLI would)."""

    def members(self, group_id: str) -> set[str]:
        return {BOB} if group_id == DBA_GROUP else set()


@dataclass
class RestoreWatch:
    """Keeps a restore running in one served app's worker while a case is measured.

    The first restore of a case is driven through the Slack flow; one that ends while the
    clients run is followed by another queued through the core, as a person at the CLI
    would (open, answer, choose PITR, approval by a DBA, start): the worker picks a queued
    plan up within seconds, whatever backlog its inbox has.
    """

    tag: str  # the case: restore incidents are "benchmark restore <tag><n>z"
    prod: str  # the production database the restores restore
    driver: SlackDriver
    db: StateDb
    roots: list[int]  # the served process trees (where pg_dump/pg_restore show up)
    card: Card | None = None
    incident_id: int | None = None
    counter: int = 0
    events: list[str] = field(default_factory=list)
    samples: list[tuple[float, bool, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _t0: float = 0.0
    _since: float = 0.0
    _done_at: float | None = None
    _bot: Rollbot | None = None

    def _label(self) -> str:
        self.counter += 1
        return f"benchmark restore {self.tag}{self.counter}z"

    def _started(self, incident_id: int, label: str, how: str, t: float) -> None:
        self.incident_id, self._since, self._done_at = incident_id, time.monotonic(), None
        self.events.append(f"INC-{incident_id} ({label}) running, {how} in {self._since - t:.1f} s")

    def start_one(self) -> Card:
        """Through the Slack flow (when the app is idle: before measuring)."""
        label, t = self._label(), time.monotonic()
        self.card = drive_restore(self.driver, label, threading.Event(), 300)
        self._started(self.card.incident_id, label, "driven through Slack", t)
        return self.card

    def queue_one(self) -> None:
        """Through the core, as from the CLI (while the clients keep the inbox busy)."""
        if self._bot is None:
            settings = load_config(self.driver.config).model_copy(
                update={"database_url": self.db.url}
            )
            self._bot = Rollbot(settings, Store(self.db.url), directory=_Dbas())
        os.environ["ROLLBOT_SLACK_PROD_URL"] = self.prod  # the config names it so
        bot, label, t = self._bot, self._label(), time.monotonic()
        incident = bot.open_incident(REQUESTER, label, "production", source="cli")
        bot.answer(incident.id, "data_corruption", REQUESTER)
        bot.choose_method(incident.id, "pitr", REQUESTER)
        bot.request_approval(incident.id, REQUESTER)
        bot.approve(incident.id, BOB)
        bot.start(incident.id, REQUESTER)
        self._started(incident.id, label, "queued through the core", t)

    def running(self) -> bool:
        if self.incident_id is None:
            return False
        if self.db.state_of(self.incident_id) == "running":
            return True
        if self._done_at is None:
            self._done_at = time.monotonic()
        return False

    def _ended(self, bound: bool = False) -> str:
        """What became of the restore; ``bound``: nobody watched it end (took at most ...)."""
        assert self.incident_id is not None
        state = self.db.state_of(self.incident_id)
        took = (self._done_at or time.monotonic()) - self._since
        when = "within " if bound else ""
        return f"INC-{self.incident_id} became {state} {when}{took:.0f} s after it started"

    def ensure_running(self) -> None:
        if not self.running():
            if self.incident_id is not None:
                self.events.append(f"{self._ended(bound=True)}; another one before measuring")
            self.start_one()

    def begin(self) -> None:
        """Sample (every 0.5 s) whether a restore runs; start another when one ends."""
        self._stop = threading.Event()
        self.samples = []
        self._t0 = time.monotonic()
        self._threads = [
            threading.Thread(target=self._sample, daemon=True),
            threading.Thread(target=self._keep, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def end(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            try:
                incident = self.db.running_incidents() > 0
            except Exception:
                incident = False
            self.samples.append((time.monotonic() - self._t0, incident, tools_running(self.roots)))

    def _keep(self) -> None:
        while not self._stop.wait(1.0):
            try:
                if self.running():
                    continue
                at = time.monotonic() - self._t0
                self.events.append(f"{self._ended()}, {at:.0f} s into the measurement")
                self.queue_one()
                self.events[-1] += f" (at {time.monotonic() - self._t0:.0f} s)"
            except Exception as exc:
                if not self._stop.is_set():
                    self.events.append(f"could not start another restore: {exc}")
                    self._stop.wait(2)

    def coverage(self) -> str:
        if not self.samples:
            return "no samples"
        n = len(self.samples)
        incident = sum(1 for _, i, _ in self.samples if i) / n
        tools = sum(1 for _, _, t in self.samples if t) / n
        return (
            f"an incident was running in {incident:.0%} and pg_dump/pg_restore in {tools:.0%} "
            f"of {n} samples"
        )


# ---------------------------------------------------------------- serving
def seed(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id bigint primary key, balance int, note text)")
        conn.execute(
            "INSERT INTO accounts SELECT g, 100, md5(g::text) || md5((g * 7)::text) "
            "FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("VACUUM ANALYZE accounts")


def clone_database(cluster: ThrowawayCluster, template: str, name: str) -> str:
    from psycopg import sql

    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return cluster.url(name)


def snapshot(folder: Path, prod: str, sqlite: bool) -> None:
    config = write_slack_config(folder, sqlite=sqlite)
    env = load_config(config).environment("production")
    create_snapshot(prod, storage_of(env), migrations_table=env.migrations_table)


def serve_apart(fake: FakeSlack, nice: int) -> None:
    """Slack's Web API does not run on rollbot's host. Its stand-in here serves each call
    at ``nice`` (the worker's own nice 10 by default): answering the worker's posts uses the
    CPUs the worker would otherwise use, not the acks' (bare Bolt makes no calls at all)."""
    if nice <= 0:
        return
    handle = fake._handle

    def apart(req: Any) -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)  # this thread (Linux)
        handle(req)

    fake._handle = apart  # type: ignore[method-assign]


@dataclass
class BareBolt:
    proc: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls, environ: dict[str, str], log: Path) -> BareBolt:
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "16", "-w", "1",
                "-b", f"127.0.0.1:{port}", "benchmarks.bare_bolt:application",
            ],
            cwd=ROOT, env=environ, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the bare Bolt app did not start:\n{log.read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return cls(proc, port)
            time.sleep(0.1)
        raise RuntimeError("the bare Bolt app did not come up")

    def stop(self) -> None:
        _kill_group(self.proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def worker_of(served: Served) -> int | None:
    """The ``rollbot worker`` child of a ``rollbot serve`` process."""
    assert served.proc is not None
    for pid in children(served.proc.pid):
        with contextlib.suppress(OSError):
            if b"--parent-pid" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    return None


def cpu_roots(
    served: Iterable[Served], args: argparse.Namespace, idle: bool = False
) -> dict[int, str]:
    who = "rollbot (idle) " if idle else ""
    roots: dict[int, str] = {os.getpid(): "fake Slack + benchmark"}
    roots.update({pid: "clients" for pid in args.client_pids})
    for s in served:
        assert s.proc is not None
        roots[s.proc.pid] = f"{who}ack side"
        worker = worker_of(s)
        if worker is not None:
            roots[worker] = f"{who}rollbot worker"
    return roots


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}/slack/events"


def warm_up(urls: Iterable[str], restore: CardRef, key: bytes) -> None:
    """A few requests of each kind per URL, unmeasured (imports, caches, connections)."""
    signer = ValueSigner(key)
    for url in urls:
        for k in range(3):
            marker = f"warm{k}{time.monotonic_ns() % 10**9}"
            body = urlencode(command_body(REQUESTER, f"production warm-up {marker}"))
            post_signed(url, body, FORM)
            value = ActionValue(restore.incident_id, nonce=new_nonce()).encode(
                signer, "rb_approve:go"
            )
            post_signed(url, _click(MALLORY, restore, "rb_approve:go", "rb_approval", value), FORM)


# ---------------------------------------------------------------- one measured case
@dataclass
class CaseResult:
    name: str
    state: str
    seconds: float
    samples: list[Sample]
    rss_start: float
    rss_end: float
    acknowledged: int | None = None
    not_recorded: int | None = None
    completed: int | None = None
    drain: str = ""
    notes: list[str] = field(default_factory=list)

    def latencies(self, kinds: Iterable[str] | None = None) -> list[float]:
        wanted = set(kinds) if kinds is not None else None
        return [s[2] for s in self.samples if wanted is None or s[0] in wanted]

    @property
    def over(self) -> int:
        return sum(1 for s in self.samples if s[2] > SLOW or s[3] != 200)


def measure(
    pool: Any,
    procs: int,
    spec: ClientSpec,
    clients: int,
) -> tuple[list[Sample], str]:
    """The samples of every client, and how the client threads were scheduled."""
    groups = [tuple(range(p, clients, procs)) for p in range(procs)]
    start_at = time.time() + 1.0
    specs = [
        dataclasses.replace(spec, clients=g, start_at=start_at, seed=spec.seed + p)
        for p, g in enumerate(groups)
        if g
    ]
    parts = pool.map(run_clients, specs, chunksize=1)
    samples = [s for part, _ in parts for s in part]
    n = max(len(samples), 1)
    run, wait = (sum(sched[i] for _, sched in parts) / 1e6 / n for i in (0, 1))
    return samples, (
        f"client threads per request: {wait:.2f} ms waiting for a CPU, {run:.2f} ms on one "
        "(they stand in for Slack: this part of the latency is the load generator's)"
    )


IN_APP = {
    "rollbot_slack_ack_seconds": "front door to answer",
    "rollbot_inbox_write_seconds": "of which the inbox write",
}
BUCKET = re.compile(r"^(\w+)_bucket\{([^}]*)\} (\S+)$", re.M)
LE = re.compile(r'\ble="([^"]+)"')
Buckets = dict[str, Counter[str]]


def in_app_buckets(urls: Iterable[str]) -> Buckets:
    """Per histogram of :data:`IN_APP`, the acks within each bucket, summed over labels and
    servers, as ``/metrics`` reports them: the time inside the app (front door to answer)
    and the part of it spent recording the request in the inbox."""
    total: Buckets = {name: Counter() for name in IN_APP}
    for url in urls:
        base = url.rsplit("/slack/events", 1)[0]
        with urlopen(f"{base}/metrics", timeout=10) as resp:
            for name, labels, count in BUCKET.findall(resp.read().decode()):
                le = LE.search(labels)
                if name in total and le:
                    total[name][le.group(1)] += int(float(count))
    return total


def in_app_note(before: Buckets, after: Buckets) -> str:
    """How long the measured acks spent inside the app, and in the inbox write: the rest of
    the latency the clients saw is the transport and the wait for a CPU."""
    parts = []
    for name, label in IN_APP.items():
        counts = {le: after[name][le] - before[name][le] for le in after[name]}
        n = counts.get("+Inf", 0)
        shown = ", ".join(
            f"{counts[le] / n:.1%} within {float(le) * 1000:g} ms"
            for le in ("0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1")
            if le in counts and n
        )
        parts.append(f"{label} ({name}) of {n} acks: {shown or 'none recorded'}")
    return "inside the app, " + "; ".join(parts)


def pg_sessions(url: str) -> int:
    """Connections ever made to a PostgreSQL database (PostgreSQL 14+), -1 for SQLite."""
    if url.startswith("sqlite"):
        return -1
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else -1


def wait_drained(db: StateDb, timeout: float) -> tuple[bool, float, int]:
    t0 = time.monotonic()
    left = db.unfinished()
    while left and time.monotonic() - t0 < timeout:
        time.sleep(0.5)
        left = db.unfinished()
    return left == 0, time.monotonic() - t0, left


def account(result: CaseResult, db: StateDb, fake: FakeSlack, first_call: int) -> None:
    """Completed vs acknowledged, from the state database after the inbox drained."""
    inbox = dict(db.rows("SELECT key, status FROM inbox"))
    incidents: Counter[str] = Counter()
    carded: set[str] = set()
    for description, message in db.rows("SELECT description, chat_message FROM incidents"):
        m = MARKER.search(description or "")
        if m:
            incidents[m.group(1)] += 1
            if message:
                carded.add(m.group(1))
    with fake._lock:
        calls = fake.calls[first_call:]
    load_users = {f"U0LOAD{n:02d}" for n in range(100)} | {MALLORY}
    notices = Counter(
        "clicks not recorded" + _why(str(c.args.get("text", "")))
        for c in calls
        if c.method == "chat.postEphemeral"
        and c.args.get("user") in load_users
        and NOT_RECORDED_TEXT in str(c.args.get("text", ""))
    )
    click_notices = sum(notices.values())
    acked = not_recorded = completed = 0
    problems: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    clicks_without_row = 0
    for kind, _t, _lat, status, outcome, key, marker, _u in result.samples:
        if status != 200:
            problems["failed requests (no ack)"] += 1
            continue
        if kind == "command":
            if outcome == "recorded":
                acked += 1
                statuses[f"command {inbox.get(key, 'no inbox row')}"] += 1
                if incidents[marker] == 1:
                    completed += 1
                    if marker not in carded:
                        problems["incidents opened but no card posted"] += 1
                elif incidents[marker] == 0:
                    problems["acknowledged commands that opened no incident"] += 1
                else:
                    problems["acknowledged commands that opened >1 incident"] += 1
            elif outcome.startswith("not recorded"):
                not_recorded += 1
                if incidents[marker] or key in inbox:
                    problems["'not recorded' commands that were acted on"] += 1
            else:
                problems[f"commands answered otherwise: {outcome[:60]}"] += 1
            continue
        row = inbox.get(key)
        if row is None:
            clicks_without_row += 1
            continue
        acked += 1
        statuses[f"{kind} {row}"] += 1
        if row in UNFINISHED:
            problems["acknowledged clicks still unfinished"] += 1
        else:
            completed += 1
    # A click the inbox refused is acked empty and told with an ephemeral "not recorded".
    not_recorded += min(clicks_without_row, click_notices)
    if clicks_without_row > click_notices:
        problems["clicks acked with no inbox row and no 'not recorded' notice (lost)"] += (
            clicks_without_row - click_notices
        )
    result.acknowledged, result.not_recorded, result.completed = acked, not_recorded, completed
    if notices:
        result.notes.append(
            "ephemerals: " + ", ".join(f"{k} {v}" for k, v in sorted(notices.items()))
        )
    result.notes.append(
        "inbox rows of the load: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
    )
    for what, n in problems.items():
        result.notes.append(f"PROBLEM {what}: {n}")


def run_served_case(
    name: str,
    state: str,
    served: list[Served],
    db: StateDb,
    watch: RestoreWatch,
    pool: Any,
    args: argparse.Namespace,
    fake: FakeSlack,
    tag: str,
) -> CaseResult:
    urls = tuple(_url(s.port or 0) for s in served)
    key = db.signing_key()
    watch.ensure_running()
    assert watch.card is not None
    restore = CardRef(
        watch.card.incident_id, watch.card.channel, watch.card.ts, watch.card.thread_ts
    )
    warm_up(urls, restore, key)
    print(f"  measuring {name} ({state}) for {args.seconds:.0f} s ...", flush=True)
    roots = [s.proc.pid for s in served if s.proc is not None]
    rss_start = sum(rss_mb(r) for r in roots)
    with fake._lock:
        first_call = len(fake.calls)
    spec = ClientSpec(
        tag, urls, (), 0.0, args.seconds, key.hex(), restore, db.url, rate=args.rate,
        arrivals=args.arrivals,
    )  # fmt: skip
    watch.begin()
    cpu = CpuMeter(cpu_roots(served, args)).start()
    scheduling = SchedulingMeter(ack_side_pids(served))
    t0 = time.monotonic()
    sessions = pg_sessions(db.url)
    in_app = in_app_buckets(urls)
    samples, clients_scheduled = measure(pool, args.client_procs, spec, args.clients)
    in_app_after = in_app_buckets(urls)
    elapsed = time.monotonic() - t0 - 1.0
    cpu_used = cpu.stop()
    scheduled = [scheduling.note(len(samples)), clients_scheduled]
    sessions = pg_sessions(db.url) - sessions if sessions >= 0 else -1
    backlog = db.unfinished()
    watch.end()
    rss_end = sum(rss_mb(r) for r in roots)
    result = CaseResult(name, state, args.seconds, samples, rss_start, rss_end)
    result.notes.append(cpu_used)
    result.notes.append(in_app_note(in_app, in_app_after))
    result.notes += scheduled
    if sessions >= 0:
        result.notes.append(
            f"new connections to the state database while measuring: {sessions} "
            "(pg_stat_database.sessions)"
        )
    result.notes.append(f"restore: {watch.coverage()}")
    result.notes += [f"restore: {e}" for e in watch.events]
    watch.events = []
    print(
        f"  {len(samples)} requests in {elapsed:.1f} s; waiting for the inbox to drain", flush=True
    )
    if len(served) > 1:
        workers = {worker_of(x): n + 1 for n, x in enumerate(served)}
        ran = db.rows(
            "SELECT DISTINCT claimed_by FROM steps WHERE kind = 'postgres.restore' "
            "AND claimed_by IS NOT NULL"
        )
        where = sorted({workers.get(int(c.split(":")[1]), 0) for (c,) in ran})
        result.notes.append(
            "restore steps ran in the worker of replica "
            + ", ".join(str(w) if w else "?" for w in where)
        )
    drained, took, left = wait_drained(db, args.drain_timeout)
    rate = (backlog - left) / took if took > 0 else float("nan")
    result.drain = (
        f"inbox drained {took:.1f} s after the clients stopped"
        if drained
        else f"inbox NOT drained after {took:.0f} s: {left} rows unfinished"
    ) + f" ({backlog} unfinished rows when they stopped: the worker(s) did {rate:.1f} rows/s)"
    time.sleep(1.0)  # the ack side's "not recorded" notices are posted in the background
    account(result, db, fake, first_call)
    for s in served:
        lines = s.log.read_text(errors="replace").splitlines()
        seen: Counter[str] = Counter()
        for i, line in enumerate(lines):
            level = next((lv for lv in (" ERROR ", " WARNING ") if lv in line), None)
            if level and "`token` will be unused" not in line:  # Bolt's start-up remark
                seen[line.split(level, 1)[1][:150]] += 1
                if line.endswith("failed:"):  # a traceback follows: its last lines say why
                    tail = [t for t in lines[i + 1 : i + 40] if t.strip()]
                    end = next((k for k, t in enumerate(tail) if k and not t.startswith(" ")), 0)
                    why = " | ".join(t.strip() for t in tail[max(0, end - 3) : end + 1])
                    result.notes.append(f"{s.log.name}: {why[:600]}")
        for what, n in seen.most_common(5):
            result.notes.append(f"{s.log.parent.name}/{s.log.name}: {n}x {what}")
    return result


def run_bare_case(
    bare: BareBolt, beside: Served, watch: RestoreWatch, pool: Any, args: argparse.Namespace
) -> CaseResult:
    watch.ensure_running()
    assert watch.card is not None
    restore = CardRef(
        watch.card.incident_id, watch.card.channel, watch.card.ts, watch.card.thread_ts
    )
    dummy = b"bare bolt checks no seal"
    warm_up([_url(bare.port)], restore, dummy)
    print(f"  measuring bare Bolt for {args.seconds:.0f} s ...", flush=True)
    rss_start = rss_mb(bare.proc.pid)
    spec = ClientSpec(
        "bare",
        (_url(bare.port),),
        (),
        0.0,
        args.seconds,
        dummy.hex(),
        restore,
        None,
        rate=args.rate,
        arrivals=args.arrivals,
    )
    watch.begin()
    cpu = CpuMeter({**cpu_roots([beside], args, idle=True), bare.proc.pid: "bare Bolt"}).start()
    scheduling = SchedulingMeter([bare.proc.pid, *descendants(bare.proc.pid)], "bare Bolt")
    samples, clients_scheduled = measure(pool, args.client_procs, spec, args.clients)
    cpu_used = cpu.stop()
    scheduled = [scheduling.note(len(samples)), clients_scheduled]
    watch.end()
    result = CaseResult(
        "bare Bolt", "none", args.seconds, samples, rss_start, rss_mb(bare.proc.pid)
    )
    result.notes.append(cpu_used)
    result.notes += scheduled
    result.acknowledged = sum(1 for s in samples if s[3] == 200)
    result.notes.append(f"restore (in the one-process rollbot's worker): {watch.coverage()}")
    result.notes += [f"restore: {e}" for e in watch.events]
    watch.events = []
    return result


# ---------------------------------------------------------------- the report
def report(results: list[CaseResult]) -> None:
    ms = 1000.0
    head = (
        f"{'case':<14}{'state':<11}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>9}{'>3 s':>6}{'acked':>7}{'not rec':>8}{'done':>7}{'RSS MB start/end':>19}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in results:
        lat = r.latencies()

        def num(v: int | None) -> str:
            return "-" if v is None else str(v)

        print(
            f"{r.name:<14}{r.state:<11}{len(r.samples):>9}{len(r.samples) / r.seconds:>8.1f}"
            f"{percentile(lat, 50) * ms:>8.1f}{percentile(lat, 99) * ms:>8.1f}"
            f"{max(lat, default=float('nan')) * ms:>9.1f}{r.over:>6}{num(r.acknowledged):>7}"
            f"{num(r.not_recorded):>8}{num(r.completed):>7}"
            f"{r.rss_start:>10.0f} / {r.rss_end:<6.0f}"
        )
    print()
    for r in results:
        mix = Counter(s[0] for s in r.samples)
        print(f"{r.name}:")
        print("  mix: " + ", ".join(f"{k} {v}" for k, v in sorted(mix.items())))
        lat = r.latencies(("command",))
        print(
            f"  commands: p50 {percentile(lat, 50) * ms:.1f} ms, "
            f"p99 {percentile(lat, 99) * ms:.1f} ms"
        )
        clicks = [s[2] for s in r.samples if s[0] != "command"]
        print(
            f"  clicks: p50 {percentile(clicks, 50) * ms:.1f} ms, "
            f"p99 {percentile(clicks, 99) * ms:.1f} ms"
        )
        replicas = sorted({s[7] for s in r.samples})
        if len(replicas) > 1:
            for u in replicas:
                lat = [s[2] for s in r.samples if s[7] == u]
                print(
                    f"  replica {u + 1}: {len(lat)} requests, p50 {percentile(lat, 50) * ms:.1f} "
                    f"ms, p99 {percentile(lat, 99) * ms:.1f} ms"
                )
        outcomes = Counter(s[4] for s in r.samples if s[0] == "command")
        print("  command acks: " + ", ".join(f"{k or '-'} {v}" for k, v in outcomes.items()))
        if r.drain:
            print(f"  {r.drain}")
        for note in r.notes:
            print(f"  {note}")
    bare = next((r for r in results if r.name == "bare Bolt"), None)
    bare_p99 = percentile(bare.latencies(), 99) if bare else None
    print()
    for r in results:
        if r is bare:
            continue
        p99 = percentile(r.latencies(), 99)
        goals = [(p99 < 0.100, f"ack p99 {p99 * ms:.1f} ms < 100 ms")]
        if bare_p99:
            ratio = p99 / bare_p99
            goals.append(
                (ratio <= 1.5, f"ack p99 {ratio:.2f}x bare Bolt's {bare_p99 * ms:.1f} ms <= 1.5x")
            )
        goals.append((r.over == 0, f"{r.over} requests over 3 s (goal 0)"))
        goals.append(
            (
                r.completed == r.acknowledged,
                f"completed {r.completed} = acknowledged {r.acknowledged}",
            )
        )
        for ok, line in goals:
            print(f"{'PASS' if ok else 'MISS'}  {r.name}: {line}")


# ---------------------------------------------------------------- main
def tree_state() -> str:
    """Which rollbot was measured: the commit, and uncommitted changes to the app."""

    def git(*argv: str) -> str:
        run = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True)
        return run.stdout.rstrip()

    changed = [ln[3:] for ln in git("status", "--porcelain", "bot", "handlers").splitlines()]
    extra = f", with uncommitted changes to {', '.join(changed)}" if changed else ""
    return f"rollbot at {git('rev-parse', '--short', 'HEAD') or '?'}{extra}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds per case")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients")
    parser.add_argument(
        "--rate",
        type=float,
        default=5.0,
        help="requests per second per client, on a schedule (default 5: 100/s from 20 "
        "clients, far above what Slack sends one app); 0: each client as fast as replies come",
    )
    parser.add_argument(
        "--arrivals",
        choices=("poisson", "burst"),
        default="poisson",
        help="with --rate: each client at random gaps of mean 1/rate, independently "
        "(poisson, the default) or all clients at the same instants (burst)",
    )
    parser.add_argument(
        "--rows", type=int, default=2_000_000, help="rows in the restored table (restore length)"
    )
    parser.add_argument(
        "--one-state",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="state database of the one-process case (two replicas always share PostgreSQL)",
    )
    parser.add_argument("--skip-replicas", action="store_true", help="no two-replica case")
    parser.add_argument(
        "--drain-timeout", type=float, default=300, help="seconds to wait for the inbox to drain"
    )
    parser.add_argument(
        "--client-procs", type=int, default=2, help="processes the clients are spread over"
    )
    parser.add_argument(
        "--worker-cpu",
        choices=("low", "idle"),
        default="low",
        help="rollbot's [slack] worker_cpu: low (nice 10, the default) or idle (SCHED_IDLE)",
    )
    parser.add_argument(
        "--fake-slack-nice",
        type=int,
        default=10,
        help="the nice value the fake Slack Web API serves each call at (0: as the acks)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    args.slack = {"worker_cpu": args.worker_cpu}

    print(tree_state())
    print(
        f"{os.cpu_count()} CPUs; {args.clients} clients in {args.client_procs} processes "
        f"({f'{args.rate:g} requests/s each, {args.arrivals} arrivals' if args.rate else 'flat out'}), "
        f"{args.seconds:.0f} s per case, {args.rows:,} rows restored; worker_cpu "
        f"{args.worker_cpu}; fake Slack API at nice {max(args.fake_slack_nice, 0)}; "
        "state: one process "
        f"{args.one_state}, two replicas postgres (a PostgreSQL server of its own, like "
        "production's rollbot state, not the restored one); "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="rollbot-load-"))
    fake = FakeSlack().start()
    fake.groups[DBA_GROUP] = [BOB]
    serve_apart(fake, args.fake_slack_nice)
    cluster = ThrowawayCluster()
    state_cluster = ThrowawayCluster()  # rollbot's own state lives apart from what it restores
    started: list[Served] = []
    bare: BareBolt | None = None
    dbs: list[StateDb] = []
    results: list[CaseResult] = []
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(args.client_procs, initializer=_own_session)
    try:
        # The client processes are up and imported before anything is measured.
        args.client_pids = set(pool.map(_ping, range(args.client_procs)))
        cluster.start()
        state_cluster.start()
        t = time.monotonic()
        print(f"seeding {args.rows:,} rows ...", flush=True)
        cluster.create_database("bench_seed")
        seed(cluster.url("bench_seed"), args.rows)
        print(f"  seeded in {time.monotonic() - t:.1f} s", flush=True)

        # ---- one process, then the bare Bolt baseline beside the same restore
        one = tmp / "one"
        one.mkdir()
        sqlite = args.one_state == "sqlite"
        prod_one = clone_database(cluster, "bench_seed", "prod_one")
        snapshot(one, prod_one, sqlite)
        extra: dict[str, str] = {}
        if sqlite:
            state_one = f"sqlite:///{one / 'state.db'}"
        else:
            state_one = state_cluster.create_database("state_one")
            extra["ROLLBOT_DATABASE_URL"] = state_one
        served_one = serve(
            fake, prod_one, one, "http", sqlite=sqlite, extra_env=extra, slack=args.slack
        )
        started.append(served_one)
        db_one = StateDb(state_one)
        dbs.append(db_one)
        assert served_one.proc is not None
        watch_one = RestoreWatch(
            "one", prod_one, served_one.driver(), db_one, [served_one.proc.pid]
        )
        watch_one.start_one()
        results.append(
            run_served_case(
                "one process", args.one_state, [served_one], db_one, watch_one, pool, args,
                fake, "one",
            )
        )  # fmt: skip
        bare = BareBolt.start(served_env(fake, prod_one), tmp / "bare.log")
        results.insert(0, run_bare_case(bare, served_one, watch_one, pool, args))
        bare.stop()
        served_one.kill()

        # ---- two replicas on one PostgreSQL state database
        if not args.skip_replicas:
            two = tmp / "two"
            two_b = tmp / "two-b"
            two.mkdir()
            two_b.mkdir()
            prod_two = clone_database(cluster, "bench_seed", "prod_two")
            snapshot(two, prod_two, sqlite=False)
            (two_b / "backups").symlink_to(two / "backups")  # both workers may run the restore
            state_two = state_cluster.create_database("state_two")
            extra = {"ROLLBOT_DATABASE_URL": state_two}
            a = serve(fake, prod_two, two, "http", sqlite=False, extra_env=extra, slack=args.slack)
            started.append(a)
            b = serve(
                fake, prod_two, two_b, "http", sqlite=False, extra_env=extra, slack=args.slack
            )
            started.append(b)
            db_two = StateDb(state_two)
            dbs.append(db_two)
            roots = [s.proc.pid for s in (a, b) if s.proc is not None]
            watch_two = RestoreWatch("two", prod_two, a.driver(), db_two, roots)
            watch_two.start_one()
            results.append(
                run_served_case(
                    "two replicas", "postgres", [a, b], db_two, watch_two, pool, args, fake, "two"
                )
            )
    except BaseException:
        traceback.print_exc()
        for s in started:
            print(f"--- {s.log} (tail) ---\n{s.log.read_text(errors='replace')[-3000:]}")
        return 1
    finally:
        pool.terminate()
        for s in started:
            with contextlib.suppress(Exception):
                s.kill()
        if bare is not None:
            bare.stop()
        for d in dbs:
            d.dispose()
        fake.stop()
        cluster.stop()
        state_cluster.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report(results)
    print(
        json.dumps(
            {
                r.name: {
                    "requests": len(r.samples),
                    "p99_ms": round(percentile(r.latencies(), 99) * 1000, 1),
                }
                for r in results
            }
        )
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
