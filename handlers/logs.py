"""Logging for long-running processes: one format, and no secret in any line.

Every record passes a filter that redacts its rendered message (``bot.redact``)
before any handler formats it, whoever logged it (rollbot, Bolt, gunicorn,
psycopg). Bolt and the Slack SDK log request and response bodies at INFO and
DEBUG; they are held at WARNING, so a body never reaches the log at all.

``--log-format json`` (or ``$ROLLBOT_LOG_FORMAT``) makes every line one JSON
object (python-json-logger), for gunicorn's records as well as rollbot's: the
same formatter is installed here and in gunicorn's ``logconfig_dict``. Its
extra fields are redacted too, since a JSON line carries them where the text
format drops them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from bot.redact import redact, redact_obj

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}
QUIET = ("slack_bolt", "slack_sdk", "websocket", "urllib3")
FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Bolt reads SLACK_BOT_TOKEN from the environment whenever ``App(token=...)`` is not given,
# then warns at every start that it ignores it: ``handlers.slack.app`` hands Bolt a client
# and an ``authorize`` carrying that same token on purpose (one source for it). Nothing is
# wrong, so exactly these two messages are dropped; any other Bolt warning still shows.
KNOWN_NOISE = {
    "slack_bolt.App": frozenset(
        {
            "As you gave `client` as well, `token` will be unused.",
            "As `installation_store` or `authorize` has been used, "
            "`token` (or SLACK_BOT_TOKEN env variable) will be ignored.",
        }
    )
}


@dataclass(frozen=True)
class LogSettings:
    """How a process logs: ``text`` or ``json``, and the root level."""

    format: str = "text"
    level: str = "INFO"

    @classmethod
    def resolve(cls, fmt: str | None = None, level: str | None = None) -> LogSettings:
        """A flag wins over ``$ROLLBOT_LOG_FORMAT`` / ``$ROLLBOT_LOG_LEVEL``, which win over
        the defaults; a bad value is a one-line error, not a traceback."""
        from bot.errors import ConfigError

        fmt = (fmt or os.environ.get("ROLLBOT_LOG_FORMAT") or "text").strip().lower()
        level = (level or os.environ.get("ROLLBOT_LOG_LEVEL") or "INFO").strip().upper()
        problems = []
        if fmt not in FORMATS:
            problems.append(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
        if level not in LEVELS:
            problems.append(f"log level {level!r} is not one of {', '.join(LEVELS)}")
        if problems:
            raise ConfigError(problems)
        return cls(fmt, level)

    def export(self) -> None:
        """Put the resolved settings in the environment, so child processes (the worker
        ``rollbot serve`` starts) log the same way."""
        os.environ["ROLLBOT_LOG_FORMAT"] = self.format
        os.environ["ROLLBOT_LOG_LEVEL"] = self.level


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        type=str.lower,
        help="text (default) or json: one JSON object per line (or $ROLLBOT_LOG_FORMAT)",
    )
    parser.add_argument(
        "--log-level",
        choices=LEVELS,
        type=str.upper,
        metavar="LEVEL",
        help="DEBUG, INFO (default), WARNING, ERROR (or $ROLLBOT_LOG_LEVEL)",
    )


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class KnownNoiseFilter(logging.Filter):
    """Drops the exact messages in :data:`KNOWN_NOISE` (see there for why each is noise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        known = KNOWN_NOISE.get(record.name)
        return not (known and str(record.msg) in known)


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per record; every string in it redacted (extras included), its time
    in ISO 8601 UTC (what log pipelines parse without a hint)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: redact_obj(value) for key, value in log_data.items()}


def make_formatter(kind: str = "text") -> logging.Formatter:
    """The one formatter of a process (also built by gunicorn's ``dictConfig``)."""
    if kind == "json":
        return RedactingJsonFormatter(JSON_FIELDS, rename_fields=JSON_NAMES)
    return logging.Formatter(FORMAT)


def _quiet_level(settings: LogSettings) -> str:
    """Libraries that log bodies stay at WARNING or above, whatever the root level."""
    return max(settings.level, "WARNING", key=logging.getLevelName)


def configure_logging(settings: LogSettings | None = None) -> None:
    """Root handler on stderr with the redacting filter; noisy libraries at WARNING.

    Python warnings and uncaught exceptions (in any thread) go through the same
    handler, so even those lines are redacted and, in JSON, one object each.
    """
    settings = settings or LogSettings.resolve()
    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(settings.format))
    handler.addFilter(KnownNoiseFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for name in QUIET:
        logging.getLogger(name).setLevel(_quiet_level(settings))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def gunicorn_logconfig(settings: LogSettings | None = None) -> dict[str, Any]:
    """gunicorn's own loggers through the same filters and formatter (``logconfig_dict``)."""
    settings = settings or LogSettings.resolve()
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "rollbot",
        "filters": ["noise", "redact"],
        "stream": "ext://sys.stderr",
    }
    quiet = _quiet_level(settings)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"noise": {"()": KnownNoiseFilter}, "redact": {"()": RedactingFilter}},
        "formatters": {"rollbot": {"()": make_formatter, "kind": settings.format}},
        "handlers": {"stderr": handler},
        "root": {"level": settings.level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {
                "level": settings.level,
                "handlers": ["stderr"],
                "propagate": False,
            },
            "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
            **{name: {"level": quiet} for name in QUIET},
        },
    }


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("rollbot").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread else "?"
    logging.getLogger("rollbot").error(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
