"""Serving Slack: the acknowledging side (HTTP under gunicorn, or Socket Mode) and a worker.

``rollbot serve`` runs the acknowledging side in this process (gunicorn's
workers for HTTP, the Socket Mode client otherwise) and, unless told not to,
starts ``rollbot worker`` beside it and restarts it if it dies. The two share
nothing but the state database: the acknowledging side only records requests
(``handlers.slack.acks``), the worker does the work (``handlers.slack.worker``).
Several replicas share one PostgreSQL state database and its inbox.

Under gunicorn, ``/healthz`` says the process answers, ``/readyz`` whether it
can do its job (``handlers.health``), ``/metrics`` what it did
(``handlers.metrics``); the runtime files of one ``serve`` (gunicorn's control
socket, the metrics files, the worker's heartbeat) live in its own folder
(``handlers.rundir``), so two servers on one host do not meet there.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.config import Settings
from bot.errors import ConfigError
from bot.inbox import Inbox
from bot.redact import redact, register_secret
from bot.service import Rollbot
from bot.store import Store, open_store
from handlers.health import Readiness, migration_heads
from handlers.logs import LogSettings, gunicorn_logconfig
from handlers.metrics import (
    count_acceptances,
    count_slack_errors,
    mark_process_dead,
    metrics_probe,
)
from handlers.rundir import RunDir
from handlers.runtime import load_config
from handlers.scheduling import ask_for_short_slices
from handlers.slack.acks import Acknowledger
from handlers.slack.app import build_app
from handlers.slack.client import api_url_from_env, make_web_client
from handlers.slack.gate import DoorRefusals, front_door
from handlers.slack.payloads import BadPayload, Ignored, classify, for_bolt

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]
ACK_DB_WAIT_SECONDS = 2.0  # an acknowledging request waits this long for the state database


@dataclass(frozen=True)
class SlackTokens:
    bot_token: str
    signing_secret: str | None
    app_token: str | None

    @classmethod
    def from_env(cls, *, socket_mode: bool, worker: bool = False) -> SlackTokens:
        bot = os.environ.get("SLACK_BOT_TOKEN", "")
        secret = os.environ.get("SLACK_SIGNING_SECRET") or None
        app_token = os.environ.get("SLACK_APP_TOKEN") or None
        problems = []
        if not bot:
            problems.append(
                "SLACK_BOT_TOKEN is not set (the xoxb- bot token from the app's OAuth page)"
            )
        if socket_mode and not worker and not app_token:
            problems.append("SLACK_APP_TOKEN is not set (an xapp- token with connections:write)")
        if not socket_mode and not worker and not secret:
            problems.append("SLACK_SIGNING_SECRET is not set (Basic Information > App Credentials)")
        if problems:
            raise ConfigError(problems)
        for value in (bot, secret, app_token):
            if value:
                register_secret(value)
        return cls(bot, secret, app_token)


@dataclass
class AckSide:
    settings: Settings
    store: Store
    client: WebClient
    acks: Acknowledger


def ack_side(config: str | Path | None, tokens: SlackTokens) -> AckSide:
    settings = load_config(config)
    store = open_store(settings.database_url, wait_seconds=ACK_DB_WAIT_SECONDS, ping=False)
    inbox = count_acceptances(Inbox(store, high_water=settings.slack.inbox_high_water))
    client = count_slack_errors(make_web_client(tokens.bot_token, api_url_from_env()))
    return AckSide(settings, store, client, Acknowledger(settings, inbox, client))


def _settle_garbage_collector() -> None:
    """Move what start-up built (Bolt, the pydantic models, SQLAlchemy's mappers) out of
    the collector's generations: a full collection then walks only what requests made, so
    it pauses every thread (the one accepting requests too) for far less. Measured with
    ``benchmarks/load.py``: ack p99 197 ms before, 58 ms after (inside the app every ack
    took under 50 ms; the tail was the collector stopping the thread that accepts)."""
    gc.collect()
    gc.freeze()


def wsgi_app(
    side: AckSide, signing_secret: str, *, worker_heartbeat: Path | None = None
) -> Callable[..., Iterable[bytes]]:
    """``/slack/events`` behind the front door (``handlers.slack.gate``), ``/healthz``,
    ``/readyz`` (``worker_heartbeat``: the file of the worker ``serve`` runs, if any),
    ``/metrics``."""
    bot = Rollbot(side.settings, side.store)

    def audit(source: str, message: str) -> None:
        bot.note(None, "slack", "refused", message, {"source": source})

    readiness = Readiness(side.store, worker_heartbeat, migration_heads())
    return front_door(
        side.acks.dispatch,
        signing_secret,
        DoorRefusals(side.store, audit),
        probes={"/readyz": readiness.probe, "/metrics": metrics_probe(side.store)},
    )


class ValidatingSocketModeHandler(SocketModeHandler):  # type: ignore[misc]
    """Socket Mode with the same shape check as HTTP: a bad envelope is acked and dropped."""

    def handle(self, client: Any, req: SocketModeRequest) -> None:
        try:
            payload = classify(req.payload if isinstance(req.payload, dict) else {})
        except BadPayload as exc:
            log.info("dropped a Socket Mode envelope of the wrong shape: %s", exc)
            payload = None
        if payload is None or isinstance(payload, Ignored):
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        req.payload = for_bolt(payload)  # Bolt sees only the validated fields
        super().handle(client, req)


class WorkerProcess:
    """``rollbot worker`` beside the acknowledging side, restarted if it exits unexpectedly.

    It runs in a session of its own: Linux schedules each session as one group, so the
    worker (and its pg_dump/pg_restore) can then yield as a group, not spend the acks'
    share (``handlers.scheduling``). Signals reach it from here, not from the terminal:
    ``stop`` on the way out, and it stops by itself when this process is gone."""

    def __init__(self, config: str | Path | None) -> None:
        self.argv = [sys.executable, "-m", "handlers.cli"]
        if config:
            self.argv += ["--config", str(config)]
        self.argv += ["worker", "--parent-pid", str(os.getpid())]
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-watch", daemon=True)

    def start(self) -> WorkerProcess:
        self.proc = self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv, start_new_session=True)

    def _watch(self) -> None:
        delay = 1.0
        while not self._stopping.wait(1.0):
            if self.proc is not None and self.proc.poll() is not None:
                log.warning("rollbot worker exited (%s); starting it again", self.proc.returncode)
                self._stopping.wait(delay)
                if not self._stopping.is_set():
                    self.proc = self._spawn()
                    delay = min(delay * 2, 30.0)

    def stop(self, timeout: float = 40.0) -> None:
        self._stopping.set()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def serve_http(
    config: str | Path | None,
    *,
    host: str = "0.0.0.0",
    port: int = 3000,
    workers: int = 1,
    threads: int = 16,
    with_worker: bool = True,
    log_settings: LogSettings | None = None,
    run_dir: RunDir | None = None,
) -> None:
    """Acknowledge under gunicorn's ``gthread`` workers; the work runs in ``rollbot worker``.

    ``run_dir`` holds gunicorn's control socket and the worker's heartbeat; without
    one the control socket is off (the shared default path is what two servers on
    one host fought over)."""
    from gunicorn.app.base import BaseApplication

    tokens = SlackTokens.from_env(socket_mode=False)
    settings = load_config(config)  # a bad config fails here with one line, not in a worker
    open_store(settings.database_url).dispose()  # the schema is upgraded once, before anyone forks
    log_settings = log_settings or LogSettings.resolve()
    heartbeat = run_dir.heartbeat if run_dir is not None and with_worker else None
    control: dict[str, Any] = (
        {"control_socket": str(run_dir.control_socket)}
        if run_dir is not None
        else {"control_socket_disable": True}
    )

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{host}:{port}",
                "worker_class": "gthread",
                "workers": workers,
                "threads": threads,
                "timeout": 60,
                "graceful_timeout": 30,
                "accesslog": None,
                "loglevel": log_settings.level.lower(),
                "logconfig_dict": gunicorn_logconfig(log_settings),
                "proc_name": "rollbot",
                "child_exit": lambda _server, worker: mark_process_dead(worker.pid),
                **control,
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Callable[..., Any]:
            side = ack_side(config, tokens)
            app = wsgi_app(side, tokens.signing_secret or "", worker_heartbeat=heartbeat)
            _settle_garbage_collector()
            # An ack hands the GIL back at each database call; another thread holding it
            # (gunicorn's loop, a second request) gives it up after 1 ms, not Python's 5.
            sys.setswitchinterval(0.001)
            ask_for_short_slices()  # before gunicorn starts its threads: they inherit it
            return app

    worker = WorkerProcess(config).start() if with_worker else None
    try:
        Gunicorn().run()
    finally:
        if worker is not None:
            worker.stop()


def serve_socket(
    config: str | Path | None, *, stop: threading.Event | None = None, with_worker: bool = True
) -> None:
    """Socket Mode: connect out to Slack, retrying while it is unreachable."""
    tokens = SlackTokens.from_env(socket_mode=True)
    settings = load_config(config)
    open_store(settings.database_url).dispose()
    side = ack_side(config, tokens)
    app = build_app(side.acks, client=side.client)
    handler = ValidatingSocketModeHandler(app, tokens.app_token, web_client=side.client)
    _settle_garbage_collector()
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = WorkerProcess(config).start() if with_worker else None
    delay = 1.0
    try:
        while not stop.is_set():
            try:
                handler.connect()
                break
            except Exception as exc:
                log.warning(
                    "Socket Mode connect failed, retrying in %.0f s: %s",
                    delay,
                    redact(str(exc))[:200],
                )
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
        log.info("rollbot connected in Socket Mode")
        stop.wait()
    finally:
        handler.close()
        if worker is not None:
            worker.stop()
