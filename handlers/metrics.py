"""Prometheus metrics of the served app, merged across its processes on each scrape.

The acknowledging side runs in several gunicorn workers and the work in a
``rollbot worker`` beside them, so every process writes its samples to files in
``$PROMETHEUS_MULTIPROC_DIR`` (``rollbot serve`` sets it per process group,
``handlers.rundir``) and ``/metrics`` adds them up (prometheus-client's
multiprocess mode). The variable must be set before ``prometheus_client`` is
first imported; without it, as in tests run in-process, each process counts
for itself. Inbox depth and age are read from the state database at scrape
time, so they are right whichever process answers.

Names: see :data:`ACK_SECONDS` and the definitions below (all ``rollbot_``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from slack_sdk import WebClient
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bot.executor import Executor, NullSink, ProgressSink
from bot.inbox import UNFINISHED, Inbox
from bot.models import InboxItem, Incident, Step
from bot.steps import COMMAND_NAMES, StepResult
from bot.store import Store

log = logging.getLogger(__name__)

ACK_SECONDS = Histogram(
    "rollbot_slack_ack_seconds",
    "Time from a Slack request's arrival at the front door to its answer, by payload kind.",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
)
REQUESTS = Counter(
    "rollbot_slack_requests",
    "Slack requests answered by the front door, by payload kind and HTTP status.",
    ["kind", "status"],
)
ACCEPTED = Counter(
    "rollbot_inbox_accepted",
    "Requests offered to the inbox, by result (recorded, duplicate, full, unavailable).",
    ["result"],
)
INBOX_WRITE_SECONDS = Histogram(
    "rollbot_inbox_write_seconds",
    "How long an ack waited to record its request in the inbox (the state database), by "
    "result: the part of rollbot_slack_ack_seconds the state database decides.",
    ["result"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
STEPS = Counter(
    "rollbot_steps",
    "Incident steps that ended, by step kind and outcome (succeeded, failed, interrupted).",
    ["kind", "outcome"],
)
STEP_SECONDS = Histogram(
    "rollbot_step_duration_seconds",
    "How long incident steps ran, by step kind and outcome.",
    ["kind", "outcome"],
    buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
PROVIDER_ERRORS = Counter(
    "rollbot_provider_errors",
    "Failed calls to external systems: Slack Web API methods, and provider steps that "
    "failed (provider = the step kind's prefix, e.g. postgres).",
    ["provider", "call"],
)
PAGES = Counter(
    "rollbot_pages_sent",
    "Pages sent to an on-call service (stays 0 until paging is built).",
    ["provider"],
)
PAGES.labels("pagerduty")  # exported at 0 from the start, so alerts on it can be written now


# ------------------------------------------------------------ the front door
def observe_request(kind: str, status: int, seconds: float) -> None:
    ACK_SECONDS.labels(kind).observe(seconds)
    REQUESTS.labels(kind, str(status)).inc()


def count_acceptances(inbox: Inbox) -> Inbox:
    """Count what :meth:`Inbox.accept` answers (e.g. how many acks said "not recorded") and
    time it: when acks slow down, this says whether the state database is why."""
    accept = inbox.accept

    def counted(request: Any) -> Any:
        started = time.perf_counter()
        result = accept(request)
        INBOX_WRITE_SECONDS.labels(str(result.value)).observe(time.perf_counter() - started)
        ACCEPTED.labels(str(result.value)).inc()
        return result

    inbox.accept = counted  # type: ignore[method-assign]
    return inbox


def count_slack_errors(client: WebClient) -> WebClient:
    """Count failed Web API calls (after the client's own retries) per method."""
    call = client.api_call

    def api_call(api_method: str, **kwargs: Any) -> Any:
        try:
            return call(api_method, **kwargs)
        except Exception:
            PROVIDER_ERRORS.labels("slack", api_method[:64]).inc()
            raise

    client.api_call = api_call  # type: ignore[method-assign]
    return client


def page_sent(provider: str) -> None:
    """For the paging integration: one page went out through ``provider``."""
    PAGES.labels(provider).inc()


# ------------------------------------------------------------ steps (the worker)
def step_kind(step: Step) -> str:
    """The label of a step: its kind, and which team command for ``command`` steps."""
    command = (step.params or {}).get("command") if step.kind == "command" else None
    return f"command.{command}" if command in COMMAND_NAMES else step.kind


def step_ended(step: Step, outcome: str, seconds: float | None) -> None:
    kind = step_kind(step)
    STEPS.labels(kind, outcome).inc()
    if seconds is not None:
        STEP_SECONDS.labels(kind, outcome).observe(seconds)
    provider = step.kind.partition(".")[0] if "." in step.kind else step.kind
    if outcome == "failed" and provider not in ("manual",):
        PROVIDER_ERRORS.labels(provider, kind).inc()


class MeteredSink:
    """A ``ProgressSink`` that times each step around the one it wraps."""

    def __init__(self, inner: ProgressSink) -> None:
        self.inner = inner
        self._started: dict[int, float] = {}

    def step_started(self, incident: Incident, step: Step) -> None:
        self.inner.step_started(incident, step)
        self._started[step.id] = time.monotonic()  # after the post: the step's own time

    def step_progress(self, incident: Incident, step: Step, text: str) -> None:
        self.inner.step_progress(incident, step, text)

    def step_finished(self, incident: Incident, step: Step, result: StepResult) -> None:
        started = self._started.pop(step.id, None)
        seconds = time.monotonic() - started if started is not None else None
        try:
            step_ended(step, "succeeded" if result.ok else "failed", seconds)
        finally:
            self.inner.step_finished(incident, step, result)


def meter_steps(executor: Executor) -> Executor:
    """Every run this executor is given to drive goes through a :class:`MeteredSink`.

    The worker's flows hand the executor their Slack sink (``Executor.submit``);
    wrapping here keeps the core free of metrics.
    """
    submit = executor.submit

    def metered(ref: int | str, sink: ProgressSink | None = None, done: Any = None) -> Any:
        return submit(ref, MeteredSink(sink or NullSink()), done)

    executor.submit = metered  # type: ignore[method-assign]
    return executor


# ------------------------------------------------------------ the scrape
class InboxCollector(Collector):
    """Inbox depth (unfinished rows by status) and the age of the oldest, read at scrape."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.store = store.inbox_side
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "rollbot_inbox_readable", "1 when the scrape could read the inbox, else 0."
        )
        try:
            with self.store.read() as session:
                rows = session.execute(
                    select(InboxItem.status, func.count(), func.min(InboxItem.accepted_at))
                    .where(InboxItem.status.in_(UNFINISHED))
                    .group_by(InboxItem.status)
                ).all()
        except SQLAlchemyError as exc:
            log.debug("inbox metrics skipped: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "rollbot_inbox_depth", "Unfinished inbox rows, by status.", labels=["status"]
        )
        counts = {status: 0 for status in UNFINISHED}
        oldest: datetime | None = None
        for status, count, first in rows:
            counts[status] = int(count)
            if first is not None:
                first = first if first.tzinfo else first.replace(tzinfo=UTC)
                oldest = first if oldest is None else min(oldest, first)
        for status, count in counts.items():
            depth.add_metric([status], count)
        yield depth
        age = (self.clock() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "rollbot_inbox_oldest_unfinished_age_seconds",
            "Seconds since the oldest unfinished inbox row was accepted (0 when none).",
            value=max(age, 0.0),
        )


class _Default(Collector):
    """This process' own metrics (the default registry), when there is no multiprocess dir."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def scrape_registry(store: Store) -> CollectorRegistry:
    """What a scrape shows: every process' samples, plus the inbox read at scrape time."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Default())
    registry.register(InboxCollector(store))
    return registry


def metrics_probe(store: Store) -> Callable[[], tuple[int, str, bytes]]:
    """``/metrics`` in Prometheus' text format."""
    registry = scrape_registry(store)

    def probe() -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, generate_latest(registry)

    return probe


def serve_metrics(port: int, store: Store) -> None:
    """``/metrics`` on ``port`` in a thread (a ``rollbot worker`` run on its own)."""
    start_http_server(port, registry=scrape_registry(store))
    log.info("metrics at http://0.0.0.0:%s/metrics", port)


def mark_process_dead(pid: int) -> None:
    """gunicorn's ``child_exit``: drop a dead worker's live gauges (prometheus-client docs)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid)
