"""The audit trail: append-only events with actor and time, secrets redacted.

Every transition, approval (and refusal), command and provider call is an
event. Optionally each event is also appended to a plain file in the runbook's
format (``2025-01-15T10:30:00Z - Migration started: NAME``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.models import AuditEvent, utcnow
from bot.redact import redact, redact_obj
from bot.request_context import current_request

_file_lock = threading.Lock()


def runbook_line(at: datetime, message: str) -> str:
    """One line in the runbook's audit.log format."""
    return f"{at.strftime('%Y-%m-%dT%H:%M:%SZ')} - {message}"


def append_audit_line(path: Path, message: str, at: datetime | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = runbook_line(at or utcnow(), redact(message).replace("\n", " "))
    with _file_lock, path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


class AuditTrail:
    """Writes audit events inside the caller's unit of work (so they commit with it)."""

    def __init__(self, log_file: Path | None = None) -> None:
        self.log_file = log_file

    def record(
        self,
        session: Session,
        *,
        actor: str,
        kind: str,
        message: str,
        incident_id: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> AuditEvent:
        data = dict(data or {})
        request = current_request()
        if request and request.via:
            data.setdefault("via", request.via)
        event = AuditEvent(
            incident_id=incident_id,
            at=utcnow(),
            actor=redact(actor),
            kind=kind,
            message=redact(message),
            data=redact_obj(data),
        )
        # Flushed with the rest of the unit of work (or before a query that needs it): a
        # flush per event was a tenth of the worker's CPU; rows still insert in this order.
        session.add(event)
        if self.log_file is not None:
            append_audit_line(self.log_file, event.message, event.at)
        return event


def timeline(session: Session, incident_id: int) -> Sequence[AuditEvent]:
    return session.scalars(
        select(AuditEvent).where(AuditEvent.incident_id == incident_id).order_by(AuditEvent.id)
    ).all()


def format_timeline(events: Sequence[AuditEvent]) -> list[str]:
    return [
        f"{e.at.strftime('%Y-%m-%dT%H:%M:%SZ')}  {e.actor:<14} {e.kind:<12} {e.message}"
        for e in events
    ]
