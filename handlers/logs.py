"""Logging for long-running processes: one format, and no secret in any line.

Every record passes a filter that redacts its rendered message (``bot.redact``)
before any handler formats it, whoever logged it (rollbot, Bolt, gunicorn,
psycopg). Bolt and the Slack SDK log request and response bodies at INFO and
DEBUG; they are held at WARNING, so a body never reaches the log at all.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.redact import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = ("slack_bolt", "slack_sdk", "websocket", "urllib3")


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """Root handler on stderr with the redacting filter; noisy libraries at WARNING."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def gunicorn_logconfig() -> dict[str, Any]:
    """gunicorn's own loggers through the same filter (``logconfig_dict``)."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "rollbot",
        "filters": ["redact"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactingFilter}},
        "formatters": {"rollbot": {"format": FORMAT}},
        "handlers": {"stderr": handler},
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
            **{name: {"level": "WARNING"} for name in QUIET},
        },
    }
