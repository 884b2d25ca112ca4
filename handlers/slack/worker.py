"""``rollbot worker``: where Slack work happens, in its own process, away from the acks.

The loop claims inbox rows (``bot.inbox``) and hands each to a small pool
(``handlers.slack.jobs``); incident steps run on the executor's own pool. A
row that fails because the state database is unreachable is kept and tried
again with backoff, so work accepted before an outage is done after it. Every
few seconds it also turns steps of dead workers into ``interrupted`` (and
queues the notice), continues plans a person queued from the CLI, and
refreshes the cards of incidents the CLI changed. SIGTERM stops the claiming;
unfinished rows stay for the next start.

Under ``rollbot serve`` the loop touches a heartbeat file in the server's
folder (``handlers.rundir``), which ``/readyz`` reads, and the steps it drives
and the Slack calls it makes are counted for ``/metrics`` (``handlers.metrics``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from bot.inbox import Inbox, InboxStatus
from bot.models import AuditEvent, InboxItem, Step
from bot.redact import redact
from handlers import rundir
from handlers.metrics import meter_steps, step_ended
from handlers.runtime import Runtime, paging_notifiers
from handlers.slack.flows import IncidentFlows
from handlers.slack.jobs import NotYetPostedError, SlackJobs
from handlers.slack.notices import deliver_until, deliverer
from handlers.slack.poster import SlackPoster
from handlers.timers import start_timer_sweep

log = logging.getLogger(__name__)
MAX_RETRY_DELAY = 5.0
CARD_WAITS = 40  # a click on a card that is being posted waits at most this many half-seconds


def is_transient(exc: BaseException) -> bool:
    """The state database is down or busy: try the same thing again later."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@dataclass
class _Retry:
    item: InboxItem
    due: float
    attempt: int
    status: InboxStatus | None = None  # set: only the finish is left to store


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        poster: SlackPoster,
        *,
        threads: int = 4,
        poll_seconds: float = 0.05,
        scan_seconds: float = 2.0,
        debounce_seconds: float = 1.0,
    ) -> None:
        self.runtime = runtime
        meter_steps(runtime.executor)  # before the flows hand it any step to run
        self.flows = IncidentFlows(runtime, poster, debounce_seconds=debounce_seconds)
        self.jobs = SlackJobs(runtime, self.flows, poster)
        self.inbox = Inbox(runtime.bot.store, lease=timedelta(seconds=60))
        self.deliverer = deliverer(runtime, poster, paging_notifiers(runtime.settings))
        self.worker_id = runtime.executor.worker_id
        self.poll_seconds = poll_seconds
        self.scan_seconds = scan_seconds
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="rollbot-work")
        self.slots = threading.BoundedSemaphore(threads)
        self._retries: list[_Retry] = []
        self._lock = threading.Lock()
        self._last_audit_id: int | None = None
        self._next_prune = 0.0
        served_by = rundir.current()
        self.heartbeat = rundir.Heartbeat(served_by.heartbeat) if served_by else None

    # ------------------------------------------------------------ the loop
    def run(self, stop: threading.Event, parent_pid: int | None = None) -> None:
        self._scan(first=True)
        threading.Thread(
            target=deliver_until, args=(stop, self.deliverer), name="rollbot-notices", daemon=True
        ).start()
        timers = start_timer_sweep(self.runtime)  # reminders, pages, cron: exactly once
        next_scan = time.monotonic() + self.scan_seconds
        while not stop.is_set():
            if self.heartbeat is not None:
                self.heartbeat.beat()
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("the rollbot serve process that started this worker is gone; stopping")
                break
            if time.monotonic() >= next_scan:
                self._scan()
                next_scan = time.monotonic() + self.scan_seconds
            if not self.slots.acquire(timeout=self.poll_seconds):
                continue
            retry = self._due_retry()
            if retry is not None:
                self.pool.submit(self._again, retry)
                continue
            item = self._claim()
            if item is None:
                self.slots.release()
                stop.wait(self.poll_seconds)
                continue
            self.pool.submit(self._handle, item, 1)
        timers.shutdown(wait=False)
        self.pool.shutdown(wait=True)

    def _claim(self) -> InboxItem | None:
        try:
            return self.inbox.claim(self.worker_id)
        except SQLAlchemyError as exc:
            log.warning("cannot claim inbox rows (will retry): %s", _short(exc))
            time.sleep(0.5)
            return None

    # ------------------------------------------------------------ one row
    def _handle(self, item: InboxItem, attempt: int) -> None:
        try:
            status = self.jobs.handle(item)
        except NotYetPostedError:
            if attempt >= CARD_WAITS:
                status = InboxStatus.FAILED
                self._quietly(self.jobs.tell_failure, item)
            else:
                self._later(item, attempt, delay=0.5)
                return
        except Exception as exc:
            if is_transient(exc):
                log.warning("inbox row %s waits for the state database: %s", item.id, _short(exc))
                self._later(item, attempt)
                return
            log.error("inbox row %s failed:\n%s", item.id, redact(traceback.format_exc()))
            status = InboxStatus.FAILED
            self._quietly(self.jobs.tell_failure, item)
        if item.action == "step_interrupted":
            self._count_interrupted(item)
        self._finish(item, status, attempt)

    def _count_interrupted(self, item: InboxItem) -> None:
        """One interrupted attempt for ``/metrics`` (its notice is queued once per attempt,
        by the recovery at start-up as well as by the periodic one)."""
        try:
            with self.runtime.bot.store.read() as session:
                step = session.get(Step, int((item.payload or {}).get("step_id") or 0))
            if step is not None:
                step_ended(step, "interrupted", None)
        except Exception as exc:  # a metric is never worth failing the row for
            log.warning("could not count an interrupted step: %s", _short(exc))

    def _finish(self, item: InboxItem, status: InboxStatus, attempt: int) -> None:
        try:
            self.inbox.finish(item.id, status)
        except Exception as exc:
            if not is_transient(exc):
                log.error("could not finish inbox row %s: %s", item.id, _short(exc))
            self._later(item, attempt, status=status)
            return
        self.slots.release()

    def _later(
        self,
        item: InboxItem,
        attempt: int,
        delay: float | None = None,
        status: InboxStatus | None = None,
    ) -> None:
        wait = delay if delay is not None else min(MAX_RETRY_DELAY, 0.25 * 2**attempt)
        with self._lock:
            self._retries.append(_Retry(item, time.monotonic() + wait, attempt + 1, status))
        self.slots.release()

    def _due_retry(self) -> _Retry | None:
        now = time.monotonic()
        with self._lock:
            for n, retry in enumerate(self._retries):
                if retry.due <= now:
                    return self._retries.pop(n)
        return None

    def _again(self, retry: _Retry) -> None:
        if retry.status is not None:
            self._finish(retry.item, retry.status, retry.attempt)
            return
        try:
            still_ours = self.inbox.renew(retry.item.id, self.worker_id)
        except Exception as exc:
            if not is_transient(exc):
                log.error("inbox row %s: %s", retry.item.id, _short(exc))
            self._later(retry.item, retry.attempt)
            return
        if not still_ours:  # finished or taken over meanwhile
            self.slots.release()
            return
        self._handle(retry.item, retry.attempt)

    @staticmethod
    def _quietly(fn: object, *args: object) -> None:
        try:
            fn(*args)  # type: ignore[operator]
        except Exception as exc:
            log.warning("could not tell about a failure: %s", _short(exc))

    def pending_retries(self) -> int:
        with self._lock:
            return len(self._retries)

    # ------------------------------------------------------------ every few seconds
    def _scan(self, first: bool = False) -> None:
        try:
            self.inbox.release_orphans(self.runtime.executor.process_gone)
            self.runtime.executor.recover()
            self.flows.resume_queued(timedelta(0) if first else timedelta(seconds=3))
            self._refresh_cards_the_cli_changed()
            self._keep_approver_groups_fresh()
            if time.monotonic() >= self._next_prune:
                self.runtime.bot.forget_old_requests(timedelta(days=7))
                self._next_prune = time.monotonic() + 600
        except Exception as exc:
            log.warning("periodic work skipped: %s", _short(exc))

    def _keep_approver_groups_fresh(self) -> None:
        """Look the approver groups up here, so a command's transaction never waits on Slack
        for them (the directory caches each lookup for a minute)."""
        approvals = self.runtime.settings.approvals
        groups = set(approvals.groups)
        for tier in ("development", "staging", "production"):
            groups |= set(approvals.for_tier(tier).groups or ())  # type: ignore[arg-type]
        for group in sorted(groups):
            self.runtime.bot.directory.members(group)

    def _refresh_cards_the_cli_changed(self) -> None:
        with self.runtime.bot.store.read() as session:
            if self._last_audit_id is None:
                self._last_audit_id = session.scalar(select(func.max(AuditEvent.id))) or 0
                return
            rows = session.execute(
                select(AuditEvent.id, AuditEvent.incident_id, AuditEvent.data)
                .where(AuditEvent.id > self._last_audit_id)
                .order_by(AuditEvent.id)
                .limit(2000)
            ).all()
        changed = {
            incident_id
            for _id, incident_id, data in rows
            if incident_id and str((data or {}).get("via", "")).startswith("cli")
        }
        if rows:
            self._last_audit_id = rows[-1][0]
        for incident_id in sorted(changed):
            self.flows.refresh(incident_id)


def _short(exc: BaseException) -> str:
    text = redact(str(exc)).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def run_worker(
    config: str | None,
    *,
    parent_pid: int | None = None,
    threads: int = 4,
    grace_seconds: float = 25.0,
    niceness: int = 10,
    metrics_port: int | None = None,
) -> int:
    """``rollbot worker`` until SIGTERM; running steps get ``grace_seconds`` to finish, then
    the process ends and they become ``interrupted`` at the next start (a person decides)."""
    import signal

    from handlers.runtime import load_config, start_runtime
    from handlers.scheduling import give_way
    from handlers.slack.client import SlackGroupDirectory, api_url_from_env, make_web_client
    from handlers.slack.server import SlackTokens

    tokens = SlackTokens.from_env(socket_mode=False, worker=True)
    settings = load_config(config)
    # A thread holding the state database's write lock gets the GIL back sooner.
    sys.setswitchinterval(0.001)
    # Acks are short and must not wait for the CPU behind the worker: it, and the tools it
    # starts, yield to the acknowledging side (before any thread starts: they inherit it).
    cpu = give_way(settings.slack.worker_cpu, niceness) if niceness else "default"
    from handlers.metrics import count_slack_errors, serve_metrics

    client = count_slack_errors(make_web_client(tokens.bot_token, api_url_from_env()))
    runtime = start_runtime(settings, directory=SlackGroupDirectory(client))
    if metrics_port:
        serve_metrics(metrics_port, runtime.bot.store)
    worker = Worker(runtime, SlackPoster(client), threads=threads)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("rollbot worker %s started (CPU: %s)", worker.worker_id, cpu)
    worker.run(stop, parent_pid)
    deadline = time.monotonic() + grace_seconds
    while runtime.executor.busy() and time.monotonic() < deadline:
        time.sleep(0.2)
    if runtime.executor.busy():
        log.warning("stopping with steps still running; they become interrupted at the next start")
        logging.shutdown()
        os._exit(0)
    runtime.executor.shutdown()
    log.info("rollbot worker stopped")
    return 0
