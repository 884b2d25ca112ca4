"""What rollbot reads from Neon API v2 responses, and its one error type.

Only the fields the rollback steps use are kept; the API adds fields over time,
so everything else in a response is ignored rather than validated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.errors import ProviderError
from bot.redact import redact

# OperationStatus in the spec: scheduling, running, finished, failed, error, cancelling,
# cancelled, skipped. "cancelling" is still moving, so it is neither done nor failed.
DONE_STATUSES = frozenset({"finished", "skipped"})
FAILED_STATUSES = frozenset({"failed", "error", "cancelled"})


class NeonError(ProviderError):
    """The Neon API refused or failed; the message is one line, safe to show a person.

    ``status`` is the HTTP status (None when no response came back); ``retryable``
    says whether trying the same request later may work (locked, rate-limited, down).
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(redact(" ".join(message.split())))
        self.status = status
        self.retryable = retryable


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (RFC 3339, e.g. ``2022-11-23T17:42:25Z``) as an aware datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` (``2026-12-02T10:30:00Z``), the form the API documents.

    A naive datetime is refused: guessing its zone could restore to the wrong hour.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {value.isoformat()} has no time zone; give an aware datetime")
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


@dataclass(frozen=True)
class Branch:
    """A Neon branch, as far as choosing, restoring and switching to it needs."""

    id: str
    name: str
    parent_id: str | None
    parent_timestamp: datetime | None
    parent_lsn: str | None
    created_at: datetime
    default: bool
    protected: bool
    current_state: str

    @classmethod
    def from_api(cls, data: dict) -> Branch:
        """From the spec's ``Branch`` object; extra fields are ignored."""
        created_at = parse_time(data["created_at"])
        if created_at is None:
            raise ValueError("branch without created_at")
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            parent_id=data.get("parent_id") or None,
            parent_timestamp=parse_time(data.get("parent_timestamp")),
            parent_lsn=data.get("parent_lsn") or None,
            created_at=created_at,
            default=bool(data.get("default", data.get("primary", False))),
            protected=bool(data.get("protected", False)),
            current_state=str(data.get("current_state", "")),
        )


@dataclass(frozen=True)
class Operation:
    """A Neon operation: changes to branches are asynchronous until these finish."""

    id: str
    action: str
    status: str
    branch_id: str | None
    error: str | None

    @classmethod
    def from_api(cls, data: dict) -> Operation:
        """From the spec's ``Operation`` object; extra fields are ignored."""
        return cls(
            id=str(data["id"]),
            action=str(data["action"]),
            status=str(data["status"]),
            branch_id=data.get("branch_id") or None,
            error=data.get("error") or None,
        )

    @property
    def done(self) -> bool:
        """Finished (or skipped as not needed): nothing left to wait for."""
        return self.status in DONE_STATUSES

    @property
    def failed(self) -> bool:
        """Ended badly; waiting longer will not change that."""
        return self.status in FAILED_STATUSES
