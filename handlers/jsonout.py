"""``--json`` output for terminal commands: one document on stdout, secret-free.

Scripts and dashboards read these, so the shapes are fixed (docs/cli-json.md): a
top-level object whose keys are always present (null or empty when there is
nothing), times in ISO-8601 UTC (``2026-01-15T10:30:00Z``), and every string
passed through the same redaction as the text output.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from bot.redact import redact_obj


def add_json_flag(p: argparse.ArgumentParser, help_text: str = "") -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help=help_text or "print one JSON object on stdout (shape: docs/cli-json.md)",
    )


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z``, to the second (the audit trail's own precision)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_from_millis(millis: int | None) -> str | None:
    """drizzle's ``when`` / ``created_at`` (epoch milliseconds) as ISO-8601."""
    return None if millis is None else iso(datetime.fromtimestamp(millis / 1000, UTC))


def emit(document: dict[str, Any]) -> None:
    """Print ``document`` as JSON, every string redacted; nothing else goes to stdout."""
    json.dump(redact_obj(document), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
