"""After a rollback: smoke checks at once, then the error rate watched on a durable timer.

Local HTTP servers stand in for the application's health endpoint and for Prometheus
(answering in its JSON shape); the fake provider runs the rollback; the test's clock is
moved and ``bot.timers.sweep`` fires what is due. No fixed sleeps.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

import tests.fake_provider  # noqa: F401  (registers the fake provider and its steps)
from bot.config import ChecksConfig, Settings, load_settings
from bot.errors import ConfigError
from bot.executor import Executor
from bot.methods import plan_steps
from bot.models import AuditEvent, Incident, OutboxItem, Step, Timer
from bot.service import Rollbot
from bot.steps import StepResult
from bot.timers import sweep
from providers.checks.error_rate import read_error_rate
from providers.checks.smoke import check_health_url
from providers.checks.watch import BLIND_AFTER, KIND
from tests.core_fixtures import Clock
from tests.fake_provider import write_fake_config

TUESDAY_10AM = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # in business hours
CHECKS_KIND = "checks.post_rollback"


# ----------------------------------------------------------------- local servers
@dataclass
class Web:
    """What the local servers answer; the test changes it between readings."""

    url: str = ""
    health_status: int = 200
    health_body: str = "status: ok"
    prom_mode: str = "value"  # value | empty | error | down | scalar | nan
    prom_value: float = 0.01
    json_body: Any = field(default_factory=lambda: {"data": {"rate": 0.02}})
    queries: list[str] = field(default_factory=list)


def _handler(web: Web) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/health":
                self._send(web.health_status, web.health_body, "text/plain")
            elif parts.path == "/api/v1/query":
                web.queries.append(parse_qs(parts.query).get("query", [""])[0])
                self._send(*_prometheus(web))
            elif parts.path == "/metrics.json":
                self._send(200, json.dumps(web.json_body), "application/json")
            else:
                self._send(404, "not found", "text/plain")

        def _send(self, status: int, body: str, content_type: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _prometheus(web: Web) -> tuple[int, str, str]:
    """Prometheus's answer to an instant query, in its JSON shape."""
    sample = [1764000000.0, str(web.prom_value)]
    if web.prom_mode == "down":
        return 503, "Service Unavailable", "text/plain"
    if web.prom_mode == "error":
        body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}
        return 400, json.dumps(body), "application/json"
    data: dict[str, Any] = {"resultType": "vector", "result": []}
    if web.prom_mode in ("value", "nan"):
        value = "NaN" if web.prom_mode == "nan" else sample[1]
        data["result"] = [{"metric": {}, "value": [sample[0], value]}]
    elif web.prom_mode == "scalar":
        data = {"resultType": "scalar", "result": sample}
    return 200, json.dumps({"status": "success", "data": data}), "application/json"


@pytest.fixture
def web() -> Iterator[Web]:
    state = Web()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------- configuration
def checks_section(**values: Any) -> str:
    lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n[environments.production.checks]\n" + "\n".join(lines) + "\n"


def fake_config_with(tmp_path: Path, state_url: str, section: str) -> Path:
    """The fake provider's config (three environments) plus a checks section."""
    path = write_fake_config(tmp_path, state_url)
    path.write_text(path.read_text() + section)
    return path


@pytest.fixture(autouse=True)
def routing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "R0ONCALLKEY00000000000000000000")
    monkeypatch.setenv("PAGERDUTY_CTO_ROUTING_KEY", "R0CTOKEY0000000000000000000000")


@pytest.fixture
def checks(web: Web) -> dict[str, Any]:
    """The production checks a test runs with (it may change them before ``settings``)."""
    return {
        "health_urls": [f"{web.url}/health"],
        "health_expect": "ok",
        "smoke_command": "echo smoke suite passed",
        "prometheus_url": web.url,
        "error_rate_query": 'sum(rate(http_errors_total{app="shop"}[5m]))',
        "error_rate_threshold": 0.05,
        "watch_minutes": 30,
        "every_minutes": 5,
        "timeout_seconds": 5,
    }


@pytest.fixture
def settings(
    tmp_path: Path, state_url: str, checks: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    if not state_url.startswith("sqlite"):
        monkeypatch.setenv("ROLLBOT_DATABASE_URL", state_url)
    return load_settings(fake_config_with(tmp_path, state_url, checks_section(**checks)))


# ----------------------------------------------------------------- driving an incident
class Recorder:
    """A progress sink keeping what each step reported last."""

    def __init__(self) -> None:
        self.last: dict[str, str] = {}
        self.finished: dict[str, StepResult] = {}

    def step_started(self, incident: Incident, step: Step) -> None:
        pass

    def step_progress(self, incident: Incident, step: Step, text: str) -> None:
        self.last[step.kind] = text

    def step_finished(self, incident: Incident, step: Step, result: StepResult) -> None:
        self.finished[step.kind] = result


def restored(bot: Rollbot, sink: Recorder | None = None) -> Incident:
    """A production restore on the fake platform, approved and run to its end."""
    incident = bot.open_incident("alice", "orders corrupted", environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    bot.choose_method(incident.id, "pitr", "alice", options={"expect": "0001_good"})
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    return Executor(bot).run_incident(incident.id, sink)


def step_of(incident: Incident, kind: str) -> Step:
    return next(s for s in incident.steps if s.kind == kind)


def check_failed(bot: Rollbot, incident_id: int) -> list[OutboxItem]:
    with bot.store.read() as session:
        return list(
            session.scalars(
                select(OutboxItem)
                .where(OutboxItem.incident_id == incident_id, OutboxItem.kind == "check_failed")
                .order_by(OutboxItem.id)
            )
        )


def thread_lines(bot: Rollbot, incident_id: int) -> list[str]:
    """What the outbox will post in the incident's own thread."""
    with bot.store.read() as session:
        rows = session.scalars(
            select(OutboxItem)
            .where(OutboxItem.incident_id == incident_id, OutboxItem.audience == "thread")
            .order_by(OutboxItem.id)
        )
        return [r.notice["summary"] for r in rows]


def readings(bot: Rollbot, incident_id: int) -> list[str]:
    with bot.store.read() as session:
        return list(
            session.scalars(
                select(AuditEvent.message)
                .where(AuditEvent.incident_id == incident_id, AuditEvent.kind == "error_rate")
                .order_by(AuditEvent.id)
            )
        )


def watch_timers(bot: Rollbot, incident_id: int, state: str = "pending") -> list[Timer]:
    with bot.store.read() as session:
        return list(
            session.scalars(
                select(Timer)
                .where(Timer.incident_id == incident_id, Timer.kind == KIND, Timer.state == state)
                .order_by(Timer.id)
            )
        )


def next_reading(bot: Rollbot, clock: Clock, incident_id: int) -> int:
    """Move the clock to the watch's next reading and sweep; how many timers fired."""
    (timer,) = watch_timers(bot, incident_id)
    clock.now = timer.due_at
    return sweep(bot)


# ----------------------------------------------------------------- the plan
def test_every_rollback_plan_ends_with_the_checks_step_when_checks_are_configured(
    bot: Rollbot, web: Web
) -> None:
    production = bot.settings.environment("production")
    for method in ("pitr", "pg_dump_restore", "neon_branch", "app_rollback", "forward_fix"):
        assert plan_steps(method, production)[-1].kind == CHECKS_KIND, method
    development = production.model_copy(update={"tier": "development"})
    assert all(s.kind != CHECKS_KIND for s in plan_steps("dev_reset", development))
    # Staging configures no checks: its plan is the provider's alone.
    assert all(
        s.kind != CHECKS_KIND for s in plan_steps("pitr", bot.settings.environment("staging"))
    )

    incident = bot.open_incident("alice", "orders corrupted", environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    planned = bot.choose_method(incident.id, "pitr", "alice")
    last = sorted(planned.steps, key=lambda s: s.seq)[-1]
    assert last.kind == CHECKS_KIND and not last.destructive
    assert f"GET {web.url}/health: 2xx within 5 s containing 'ok'" in last.plan_text
    assert "smoke command `echo smoke suite passed`" in last.plan_text
    assert "every 5 min for 30 min; above 0.05 escalates" in last.plan_text


# ----------------------------------------------------------------- smoke checks
def test_smoke_results_are_reported_and_audited_then_the_watch_starts(
    bot: Rollbot, clock: Clock, web: Web
) -> None:
    sink = Recorder()
    done = restored(bot, sink)
    assert done.state == "verifying", [s.error for s in done.steps]
    step = step_of(done, CHECKS_KIND)
    shown = sink.last[CHECKS_KIND]
    assert f"ok: GET {web.url}/health: answered 200" in shown
    assert "ok: smoke command `echo smoke suite passed`: exited 0" in shown
    assert "error rate 0.01 (under the threshold 0.05) from Prometheus" in shown
    assert step.result["smoke_checks"][0]["ok"] is True
    assert step.result["error_rate"]["value"] == 0.01
    assert web.queries == ['sum(rate(http_errors_total{app="shop"}[5m]))']  # the baseline
    with bot.store.read() as session:
        smoke = session.scalars(
            select(AuditEvent.message).where(
                AuditEvent.incident_id == done.id, AuditEvent.kind == "smoke_check"
            )
        ).all()
    assert len(smoke) == 2 and all("smoke check ok: " in m for m in smoke), smoke
    # The watch's first reading is due every_minutes after the step, by the bot's clock.
    (timer,) = watch_timers(bot, done.id)
    assert abs((timer.due_at - clock.now).total_seconds() - 300) < 60
    assert "error-rate watch started: every 5 min for 30 min" in readings(bot, done.id)[-1]


def test_a_failing_health_url_fails_the_step_with_its_url_and_status(
    bot: Rollbot, web: Web
) -> None:
    web.health_status = 500
    web.health_body = "database connection refused"
    done = restored(bot)
    assert done.state == "failed"
    step = step_of(done, CHECKS_KIND)
    assert step.status == "failed"
    assert f"GET {web.url}/health answered 500" in step.error
    assert "database connection refused" in step.error
    assert watch_timers(bot, done.id) == []  # no watch until the checks pass
    assert web.queries == []


def test_health_checks_say_what_was_wrong(web: Web, closed_port: int) -> None:
    assert check_health_url(f"{web.url}/health", 5, "ok").ok
    missing = check_health_url(f"{web.url}/health", 5, "all systems go")
    assert not missing.ok and "without 'all systems go' in its body" in missing.detail
    down = check_health_url(f"http://127.0.0.1:{closed_port}/health", 2)
    assert not down.ok and down.detail.startswith("cannot reach it: ConnectError")


# ----------------------------------------------------------------- the watch
def test_the_watch_reads_on_schedule_escalates_a_breach_after_hours_then_stops(
    bot: Rollbot, clock: Clock, web: Web
) -> None:
    done = restored(bot)
    (first_timer,) = watch_timers(bot, done.id)
    clock.advance(minutes=4)
    assert sweep(bot) == 0  # not due yet
    assert next_reading(bot, clock, done.id) == 1
    assert "reading 1 (5 min in): error rate 0.01 (under" in readings(bot, done.id)[-1]
    assert check_failed(bot, done.id) == []  # under the threshold: nobody is told

    web.prom_value = 0.2
    assert next_reading(bot, clock, done.id) == 1
    first = check_failed(bot, done.id)
    # 03:10 UTC on a Tuesday is after hours: production pages on-call and the CTO.
    assert {n.audience for n in first} == {"devops", "oncall", "cto"}
    assert "error rate 0.2 (ABOVE the threshold 0.05)" in first[0].notice["summary"]
    assert first[0].notice["details"]["value"] == 0.2

    assert next_reading(bot, clock, done.id) == 1  # still above: recorded, not announced again
    assert len(check_failed(bot, done.id)) == len(first)
    assert "reading 3 (15 min in)" in readings(bot, done.id)[-1]

    web.prom_value = 0.01
    for _ in range(3):  # readings 4, 5 and 6: the last is at watch_minutes
        assert next_reading(bot, clock, done.id) == 1
    ended = readings(bot, done.id)[-1]
    assert "watch ended after 6 readings: highest 0.2, 2 of them above the threshold" in ended
    # Each reading, and the end, is a line in the incident's thread; the breach says who heard.
    lines = thread_lines(bot, done.id)
    assert len(lines) == 7 and lines[-1] == ended, lines
    assert "reading 2 (10 min in): error rate 0.2 (ABOVE" in lines[1]
    assert lines[1].endswith("told cto, devops, oncall")
    assert "told" not in lines[2]  # still above: not announced again
    assert watch_timers(bot, done.id) == []
    clock.advance(minutes=30)
    assert sweep(bot) == 0
    fired = watch_timers(bot, done.id, "fired")
    assert [(t.due_at - first_timer.due_at).total_seconds() / 60 for t in fired] == [
        0,
        5,
        10,
        15,
        20,
        25,
    ]
    assert len(web.queries) == 7  # the baseline and six readings


def test_in_business_hours_a_breach_tells_the_devops_channel(
    bot: Rollbot, clock: Clock, web: Web
) -> None:
    clock.now = TUESDAY_10AM
    done = restored(bot)
    web.prom_value = 0.5
    assert next_reading(bot, clock, done.id) == 1
    assert {n.audience for n in check_failed(bot, done.id)} == {"devops"}


def test_a_cancelled_incident_stops_its_watch(bot: Rollbot, clock: Clock) -> None:
    done = restored(bot)
    with bot.store.session() as session:  # as if people abandoned it after the rollback
        session.get(Incident, done.id).state = "cancelled"
    assert next_reading(bot, clock, done.id) == 0
    (skipped,) = watch_timers(bot, done.id, "skipped")
    assert "cancelled" in skipped.outcome


@pytest.fixture
def unreachable(checks: dict[str, Any], closed_port: int) -> None:
    checks["prometheus_url"] = f"http://127.0.0.1:{closed_port}"


@pytest.mark.usefixtures("unreachable")
def test_an_unreachable_metrics_endpoint_is_a_plain_result_until_it_stays_blind(
    bot: Rollbot, clock: Clock
) -> None:
    sink = Recorder()
    done = restored(bot, sink)
    assert done.state == "verifying"  # the checks passed; the baseline could not be read
    assert "error rate unknown: cannot reach http://127.0.0.1:" in sink.last[CHECKS_KIND]
    assert "ConnectError" in sink.last[CHECKS_KIND]
    for reading in range(1, BLIND_AFTER - 1):  # the baseline counts as the first failure
        assert next_reading(bot, clock, done.id) == 1
        assert "error rate unknown: cannot reach" in readings(bot, done.id)[-1]
        assert check_failed(bot, done.id) == [], reading
    assert next_reading(bot, clock, done.id) == 1
    blind = check_failed(bot, done.id)
    assert {n.audience for n in blind} == {"devops", "oncall", "cto"}
    assert f"watch is blind: {BLIND_AFTER} readings in a row failed" in blind[0].notice["summary"]
    assert next_reading(bot, clock, done.id) == 1
    assert len(check_failed(bot, done.id)) == len(blind)  # said once per blind stretch


# ----------------------------------------------------------------- readings in words
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("empty", "the query returned no series"),
        ("error", "answered 400: bad_data: parse error at char 4"),
        ("down", "answered 503: Service Unavailable"),
        ("nan", "is NaN"),
    ],
)
def test_a_prometheus_answer_without_a_value_says_why(web: Web, mode: str, expected: str) -> None:
    web.prom_mode = mode
    reading = read_error_rate(ChecksConfig(prometheus_url=web.url, error_rate_query="up"))
    assert reading.value is None and not reading.breached
    assert expected in reading.line(), reading.line()


def test_a_scalar_result_and_a_json_endpoint_are_read(web: Web) -> None:
    web.prom_mode, web.prom_value = "scalar", 0.07
    scalar = read_error_rate(ChecksConfig(prometheus_url=f"{web.url}/", error_rate_query="1"))
    assert scalar.value == 0.07 and scalar.breached
    url = f"{web.url}/metrics.json"
    ok = read_error_rate(ChecksConfig(error_rate_url=url, error_rate_field="data.rate"))
    assert ok.value == 0.02 and ok.ok
    wrong = read_error_rate(ChecksConfig(error_rate_url=url, error_rate_field="data.errors"))
    assert "has no field 'data.errors' (missing at 'errors')" in wrong.line()


# ----------------------------------------------------------------- check-config
def test_check_config_reports_every_bad_checks_setting_in_one_pass(tmp_path: Path) -> None:
    bad = checks_section(
        health_urls=["https://shop.example/health", "ftp://shop.example/health"],
        error_rate_query="sum(rate(errors[5m]))",
        watch_minutes=10,
        every_minutes=15,
    ) + (
        "\n[environments.staging.checks]\n"
        'prometheus_url = "http://prometheus:9090"\n'
        'error_rate_url = "http://shop.example/errors.json"\n'
        'error_rate_field = "data..rate"\n'
    )
    path = fake_config_with(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", bad)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    problems = [p.split(": ", 1)[1] for p in caught.value.problems]
    where = "environments.production.checks"
    for expected in (
        f"{where}.health_urls.1: 'ftp://shop.example/health' is not an http(s) URL",
        f"{where}.error_rate_query: needs prometheus_url",
        f"{where}.every_minutes: must not exceed watch_minutes (10)",
        "environments.staging.checks.error_rate_query: prometheus_url is set: give the PromQL",
        "environments.staging.checks.error_rate_url: set either prometheus_url",
        "environments.staging.checks.error_rate_field: 'data..rate' is not a dotted field path",
    ):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    assert len(problems) == 6, problems
