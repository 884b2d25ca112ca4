"""In-process pieces of running rollbot in production: log formats and their redaction, the
known Bolt noise, readiness checks, the metrics the front door and the worker record, and
the per-server runtime folder."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from bot.config import load_settings
from bot.errors import ConfigError
from bot.inbox import Inbox, NewRequest
from bot.models import Incident, Step
from bot.redact import register_secret
from bot.service import Rollbot
from bot.steps import StepResult
from bot.store import Store, open_store
from handlers import rundir
from handlers.health import Readiness, migration_heads
from handlers.logs import (
    KNOWN_NOISE,
    LogSettings,
    RedactingJsonFormatter,
    configure_logging,
    gunicorn_logconfig,
)
from handlers.metrics import InboxCollector, MeteredSink, count_slack_errors
from handlers.runtime import register_provider_steps
from handlers.slack.acks import Acknowledger
from handlers.slack.app import build_app
from handlers.slack.client import make_web_client
from handlers.slack.gate import front_door
from tests.slack.conftest import write_slack_config
from tests.slack.fake_slack import BOT_TOKEN
from tests.slack.signing import SIGNING_SECRET, signature

SECRET = "s3cr3t-value-for-the-log-tests"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """``configure_logging`` changes process-wide state; put it back for the next test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = sys.excepthook, threading.excepthook
    quiet = {name: logging.getLogger(name).level for name in ("slack_bolt", "slack_sdk")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)
    for name, value in quiet.items():
        logging.getLogger(name).setLevel(value)


def _record(message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("handlers.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


# ------------------------------------------------------------ logs
def test_log_settings_flag_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLLBOT_LOG_FORMAT", raising=False)
    monkeypatch.delenv("ROLLBOT_LOG_LEVEL", raising=False)
    assert LogSettings.resolve() == LogSettings("text", "INFO")
    monkeypatch.setenv("ROLLBOT_LOG_FORMAT", "JSON")
    monkeypatch.setenv("ROLLBOT_LOG_LEVEL", "debug")
    assert LogSettings.resolve() == LogSettings("json", "DEBUG")
    assert LogSettings.resolve("text", "WARNING") == LogSettings("text", "WARNING")
    with pytest.raises(ConfigError) as refused:
        LogSettings.resolve("yaml", "LOUD")
    assert len(refused.value.problems) == 2


def test_every_json_line_is_redacted_extras_and_tracebacks_too(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    register_secret(SECRET)
    configure_logging(LogSettings("json", "INFO"))
    log = logging.getLogger("handlers.test")
    log.info("connecting with %s", SECRET, extra={"dsn": f"postgresql://u:{SECRET}@h/db"})
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        log.exception("it broke")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "connecting with ***"
    assert first["dsn"] == "postgresql://u:***@h/db"
    assert {"time", "level", "logger", "pid"} <= first.keys()
    assert datetime.fromisoformat(first["time"]).utcoffset() == timedelta(0)
    assert "RuntimeError: failed with ***" in second["exc_info"]
    assert SECRET not in "".join(lines)


def test_text_lines_are_redacted(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    register_secret(SECRET)
    configure_logging(LogSettings("text", "INFO"))
    logging.getLogger("handlers.test").warning("token %s", SECRET)
    err = capsys.readouterr().err
    assert "WARNING handlers.test: token ***" in err and SECRET not in err


def test_building_the_app_warns_about_nothing(
    restored_logging: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """SLACK_BOT_TOKEN set (as in production): Bolt's two start-up warnings are dropped,
    any other Bolt warning still shows."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    configure_logging(LogSettings("text", "INFO"))
    register_provider_steps()
    bot = Rollbot.open(load_settings(write_slack_config(tmp_path)))
    try:
        client = make_web_client(BOT_TOKEN, "http://127.0.0.1:9/")
        build_app(Acknowledger(bot.settings, Inbox(bot.store), client), client=client)
    finally:
        bot.store.dispose()
    logging.getLogger("slack_bolt.App").warning("something else Bolt has to say")
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "something else Bolt has to say" in warnings[0], err
    assert all(message not in err for message in KNOWN_NOISE["slack_bolt.App"])


def test_gunicorn_gets_the_same_formatter() -> None:
    config = gunicorn_logconfig(LogSettings("json", "WARNING"))
    formatter = config["formatters"]["rollbot"]
    made = formatter["()"](kind=formatter["kind"])
    assert isinstance(made, RedactingJsonFormatter)
    assert config["handlers"]["stderr"]["filters"] == ["noise", "redact"]
    assert config["loggers"]["gunicorn.error"]["level"] == "WARNING"
    assert config["loggers"]["slack_bolt"]["level"] == "WARNING"
    assert gunicorn_logconfig(LogSettings("text", "DEBUG"))["loggers"]["slack_sdk"]["level"] == (
        "WARNING"  # bodies never reach the log, whatever the level
    )


# ------------------------------------------------------------ readiness
@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.dispose()


def test_readiness_names_what_fails(store: Store, tmp_path: Path) -> None:
    heartbeat = tmp_path / "worker.heartbeat"
    ready = Readiness(store, heartbeat, migration_heads())
    code, _, body = ready.probe()
    assert code == 503 and json.loads(body)["checks"]["worker"].startswith("no heartbeat yet")
    rundir.Heartbeat(heartbeat).beat()
    code, _, body = ready.probe()
    assert code == 200, body
    assert json.loads(body) == {
        "ready": True,
        "checks": {"state_database": "ok", "migrations": "ok", "worker": "ok"},
    }
    old = time.time() - 60
    os.utime(heartbeat, (old, old))
    assert ready.checks()["worker"].startswith("no heartbeat for")
    heartbeat.write_text("999999999")  # no such process
    assert ready.checks()["worker"] == "worker process 999999999 is gone"

    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    unmanaged = Readiness(store, None, migration_heads())
    code, _, body = unmanaged.probe()
    checks = json.loads(body)["checks"]
    assert code == 503 and checks["migrations"].startswith("at 0001, this build needs")
    assert checks["worker"] == "not managed here (--no-worker)"


def test_readiness_when_the_state_database_cannot_be_opened(tmp_path: Path) -> None:
    gone = Store(f"sqlite:///{tmp_path / 'no' / 'such' / 'state.db'}", wait_seconds=0.5)
    code, _, body = Readiness(gone, None, migration_heads()).probe()
    checks = json.loads(body)["checks"]
    assert code == 503 and checks["state_database"].startswith("unreachable (OperationalError")
    gone.dispose()


# ------------------------------------------------------------ metrics
def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_inbox_depth_and_age_are_read_at_scrape(store: Store) -> None:
    inbox = Inbox(store)
    for key in ("a", "b", "c"):
        inbox.accept(NewRequest(key, "slack", "answer", "U1", None, {}))
    assert inbox.claim("w1") is not None
    later = datetime.now(UTC) + timedelta(minutes=10)
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in InboxCollector(store, clock=lambda: later).collect()
        for s in family.samples
    }
    assert found[("rollbot_inbox_depth", (("status", "pending"),))] == 2
    assert found[("rollbot_inbox_depth", (("status", "claimed"),))] == 1
    assert found[("rollbot_inbox_oldest_unfinished_age_seconds", ())] >= 599
    assert found[("rollbot_inbox_readable", ())] == 1


def test_steps_are_counted_by_kind_and_outcome() -> None:
    incident = Incident(id=1)
    restore = Step(id=1, kind="postgres.restore", params={})
    command = Step(id=2, kind="command", params={"command": "app_rollback"})
    before = {
        "failed": _sample("rollbot_steps_total", kind="postgres.restore", outcome="failed"),
        "provider": _sample(
            "rollbot_provider_errors_total", provider="postgres", call="postgres.restore"
        ),
        "ok": _sample(
            "rollbot_step_duration_seconds_count", kind="command.app_rollback", outcome="succeeded"
        ),
    }
    sink = MeteredSink(_Silent())
    for step, ok in ((restore, False), (command, True)):
        sink.step_started(incident, step)
        sink.step_finished(incident, step, StepResult(ok, "done"))
    assert _sample("rollbot_steps_total", kind="postgres.restore", outcome="failed") == (
        before["failed"] + 1
    )
    assert (
        _sample("rollbot_provider_errors_total", provider="postgres", call="postgres.restore")
        == before["provider"] + 1
    )
    assert (
        _sample(
            "rollbot_step_duration_seconds_count", kind="command.app_rollback", outcome="succeeded"
        )
        == before["ok"] + 1
    )
    assert sink.inner.finished == [1, 2]  # the wrapped sink still saw everything


class _Silent:
    def __init__(self) -> None:
        self.finished: list[int] = []

    def step_started(self, incident: Incident, step: Step) -> None:
        pass

    def step_progress(self, incident: Incident, step: Step, text: str) -> None:
        pass

    def step_finished(self, incident: Incident, step: Step, result: StepResult) -> None:
        self.finished.append(step.id)


def test_failed_slack_calls_are_counted() -> None:
    before = _sample("rollbot_provider_errors_total", provider="slack", call="auth.test")
    client = count_slack_errors(make_web_client(BOT_TOKEN, "http://127.0.0.1:9/"))
    with pytest.raises(Exception):  # noqa: B017  (whatever the SDK raises for a refused port)
        client.auth_test()
    assert _sample("rollbot_provider_errors_total", provider="slack", call="auth.test") == (
        before + 1
    )


def _call(app: Any, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[str, bytes]:
    got: dict[str, str] = {}

    def start_response(status: str, _headers: Any, *_: Any) -> None:
        got["status"] = status

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "wsgi.input": io.BytesIO(body),
        "REMOTE_ADDR": "127.0.0.1",
        **headers,
    }
    data = b"".join(app(environ, start_response))
    return got["status"], data


def test_the_front_door_times_requests_by_kind_and_serves_the_probes() -> None:
    app = front_door(
        lambda payload: {},
        SIGNING_SECRET,
        None,
        probes={"/readyz": lambda: (503, "application/json", b"{}")},
    )
    assert _call(app, "GET", "/readyz")[0] == "503 Service Unavailable"
    assert _call(app, "GET", "/healthz") == ("200 OK", b'{"ok": true}')
    refused = _sample("rollbot_slack_requests_total", kind="refused", status="401")
    slash = _sample("rollbot_slack_ack_seconds_count", kind="slash_command")
    assert _call(app, "POST", "/slack/events", b"command=/rollback")[0] == "401 Unauthorized"
    body = urlencode(
        {"command": "/rollback", "text": "x", "user_id": "U1", "channel_id": "C1"}
    ).encode()
    ts = str(int(time.time()))
    signed = {
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": ts,
        "HTTP_X_SLACK_SIGNATURE": signature(SIGNING_SECRET, ts, body.decode()),
    }
    assert _call(app, "POST", "/slack/events", body, **signed)[0] == "200 OK"
    assert _sample("rollbot_slack_requests_total", kind="refused", status="401") == refused + 1
    assert _sample("rollbot_slack_ack_seconds_count", kind="slash_command") == slash + 1


# ------------------------------------------------------------ the runtime folder
def test_run_dir_is_per_server_and_only_its_maker_removes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(rundir.ENV, raising=False)
    monkeypatch.delenv(rundir.METRICS_ENV, raising=False)
    stale = tmp_path / f"{rundir.PREFIX}999999999-dead"
    live = tmp_path / f"{rundir.PREFIX}{os.getpid()}-alive"
    stale.mkdir()
    live.mkdir()
    made = rundir.RunDir.create()
    assert not stale.exists() and live.exists()  # a killed server's folder is cleaned up
    assert os.environ[rundir.ENV] == str(made.path)
    assert os.environ[rundir.METRICS_ENV] == str(made.path / "metrics")
    assert (made.path / "metrics").is_dir()
    found = rundir.current()
    assert found is not None and found.path == made.path
    found.remove()  # a forked child leaving through the same code: not its folder to remove
    assert made.path.exists()
    made.remove()
    assert not made.path.exists()
