"""Serving the app: HTTP under gunicorn's threaded workers, or Socket Mode.

Both build the runtime and the app inside the serving process (for gunicorn: in
each worker, after the fork), so the executor's threads and database
connections are never shared across a fork. Neither needs Slack to be reachable
to start: the bot's identity is learned in the background.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.config import load_settings
from bot.errors import ConfigError
from bot.redact import redact, register_secret
from bot.service import Rollbot
from handlers.runtime import Runtime, start_runtime
from handlers.slack.app import build_app
from handlers.slack.client import SlackGroupDirectory, api_url_from_env, make_web_client

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]
ACK_SWITCH_INTERVAL = 0.001


@dataclass(frozen=True)
class SlackTokens:
    bot_token: str
    signing_secret: str | None
    app_token: str | None

    @classmethod
    def from_env(cls, *, socket_mode: bool) -> SlackTokens:
        bot = os.environ.get("SLACK_BOT_TOKEN", "")
        secret = os.environ.get("SLACK_SIGNING_SECRET") or None
        app_token = os.environ.get("SLACK_APP_TOKEN") or None
        problems = []
        if not bot:
            problems.append(
                "SLACK_BOT_TOKEN is not set (the xoxb- bot token from the app's OAuth page)"
            )
        if socket_mode and not app_token:
            problems.append("SLACK_APP_TOKEN is not set (an xapp- token with connections:write)")
        if not socket_mode and not secret:
            problems.append("SLACK_SIGNING_SECRET is not set (Basic Information > App Credentials)")
        if problems:
            raise ConfigError(problems)
        for value in (bot, secret, app_token):
            if value:
                register_secret(value)
        return cls(bot, secret, app_token)


def create_app(
    config: str | Path | None, tokens: SlackTokens, *, socket_mode: bool
) -> tuple[App, Runtime]:
    # Acks are short and must not wait behind background work (rendering, posting,
    # restores reporting progress) for the GIL: switch threads every 1 ms, not 5 ms.
    sys.setswitchinterval(ACK_SWITCH_INTERVAL)
    client = make_web_client(tokens.bot_token, api_url_from_env())
    runtime = start_runtime(config, directory=SlackGroupDirectory(client))
    app = build_app(
        runtime, client=client, signing_secret=tokens.signing_secret, socket_mode=socket_mode
    )
    return app, runtime


def wsgi_app(
    app: App, bot: Rollbot | None = None
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """``/slack/events`` for Slack, ``/healthz`` for load balancers and probes.

    A request refused for its signature or timestamp (401) is audited: it was an
    attempt to act that nobody can be held to, and people should see it.
    """
    slack = SlackRequestHandler(app, path="/slack/events")

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            body = json.dumps({"ok": True}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]

        def audited_start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            if status.startswith("401") and bot is not None:
                try:
                    bot.note(
                        None,
                        "slack",
                        "refused",
                        "Refused a Slack request: invalid signature or stale timestamp",
                        {"remote": environ.get("REMOTE_ADDR"), "path": environ.get("PATH_INFO")},
                    )
                except Exception:
                    log.warning("could not audit a refused request", exc_info=True)
            return start_response(status, headers, *exc)

        return slack(environ, audited_start)

    return application


def serve_http(
    config: str | Path | None,
    *,
    host: str = "0.0.0.0",
    port: int = 3000,
    workers: int = 1,
    threads: int = 16,
) -> None:
    """Run under gunicorn's ``gthread`` workers (Bolt's development server is not for this)."""
    from gunicorn.app.base import BaseApplication

    tokens = SlackTokens.from_env(socket_mode=False)
    load_settings(config)  # a bad config fails here with one line, not in a booting worker

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
                "errorlog": "-",
                "loglevel": "info",
                "proc_name": "rollbot",
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Callable[..., Any]:
            app, runtime = create_app(config, tokens, socket_mode=False)
            return wsgi_app(app, runtime.bot)

    Gunicorn().run()


def serve_socket(config: str | Path | None, *, stop: threading.Event | None = None) -> None:
    """Socket Mode: connect out to Slack, retrying while it is unreachable."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    tokens = SlackTokens.from_env(socket_mode=True)
    app, runtime = create_app(config, tokens, socket_mode=True)
    handler = SocketModeHandler(app, tokens.app_token, web_client=app.client)
    stop = stop or threading.Event()
    delay = 1.0
    while not stop.is_set():
        try:
            handler.connect()
            break
        except Exception as exc:
            log.warning(
                "Socket Mode connect failed, retrying in %.0f s: %s", delay, redact(str(exc))[:200]
            )
            stop.wait(delay)
            delay = min(delay * 2, 30.0)
    log.info("rollbot connected in Socket Mode")
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        handler.close()
        runtime.executor.shutdown()
