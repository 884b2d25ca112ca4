"""The fake's records (branches, checkpoints, operations, endpoints) and their JSON shapes.

Every ``*_json`` function renders exactly the fields the spec's schemas define (Branch,
Operation, Endpoint, Project): the server checks each response against the spec and
reports undocumented fields, so nothing here may invent one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

ADJECTIVES = (
    "aged", "bitter", "calm", "dark", "eager", "floral", "green", "icy",
    "jolly", "lively", "misty", "noisy", "proud", "quiet", "shiny", "sweet",
)  # fmt: skip
NOUNS = (
    "bird", "breeze", "dream", "field", "frost", "hill", "king", "lake",
    "meadow", "paper", "salad", "snowflake", "sound", "sun", "thunder", "wind",
)  # fmt: skip
REGION = "aws-us-east-2"
PROVISIONER = "k8s-neonvm"


def new_id(prefix: str, rng: random.Random) -> str:
    """A Neon-looking id such as ``br-aged-salad-637688``."""
    return f"{prefix}-{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}-{rng.randrange(10**6):06d}"


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds: checkpoints a few ms apart stay distinguishable."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def format_lsn(value: int) -> str:
    """PostgreSQL's ``X/Y`` notation of a 64-bit WAL position."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """The inverse of :func:`format_lsn`; ``ValueError`` for anything else."""
    high, sep, low = text.partition("/")
    if not sep or not high or not low:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class Checkpoint:
    """One point of a branch's history: a template database frozen at ``at``."""

    at: datetime
    lsn: int
    database: str


@dataclass
class BranchRecord:
    id: str
    name: str
    database: str
    created_at: datetime
    updated_at: datetime
    parent_id: str | None = None
    parent_timestamp: datetime | None = None
    parent_lsn: int | None = None
    default: bool = False
    protected: bool = False
    checkpoints: list[Checkpoint] = field(default_factory=list)
    endpoint_ids: list[str] = field(default_factory=list)
    annotation: dict[str, str] = field(default_factory=dict)


@dataclass
class EndpointRecord:
    id: str
    branch_id: str
    type: str
    created_at: datetime


@dataclass
class OperationRecord:
    """An operation reports ``running`` for its first ``remaining`` polls, then its outcome."""

    id: str
    branch_id: str
    action: str
    created_at: datetime
    updated_at: datetime
    remaining: int
    endpoint_id: str | None = None
    error: str | None = None
    done: bool = False

    @property
    def status(self) -> str:
        if not self.done:
            return "running"
        return "failed" if self.error else "finished"

    def poll(self, now: datetime) -> None:
        """One GET of the operation: counts down, then settles on its outcome."""
        if self.done:
            return
        if self.remaining > 0:
            self.remaining -= 1
            return
        self.done, self.updated_at = True, now


def _optional(pairs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pairs.items() if v is not None}


def branch_json(b: BranchRecord, project_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": b.id,
        "project_id": project_id,
        "name": b.name,
        "current_state": "ready",
        "state_changed_at": iso(b.updated_at),
        "creation_source": "console",
        "primary": b.default,
        "default": b.default,
        "protected": b.protected,
        "cpu_used_sec": 0,
        "compute_time_seconds": 0,
        "active_time_seconds": 0,
        "written_data_bytes": 0,
        "data_transfer_bytes": 0,
        "created_at": iso(b.created_at),
        "updated_at": iso(b.updated_at),
        "init_source": "parent-data",
    }
    out |= _optional(
        {
            "parent_id": b.parent_id,
            "parent_lsn": format_lsn(b.parent_lsn) if b.parent_lsn is not None else None,
            "parent_timestamp": iso(b.parent_timestamp) if b.parent_timestamp else None,
        }
    )
    return out


def annotation_json(b: BranchRecord) -> dict[str, Any]:
    return {"object": {"type": "console/branch", "id": b.id}, "value": dict(b.annotation)}


def operation_json(op: OperationRecord, project_id: str) -> dict[str, Any]:
    finished = op.done
    duration = (op.updated_at - op.created_at) // timedelta(milliseconds=1) if finished else 0
    out: dict[str, Any] = {
        "id": op.id,
        "project_id": project_id,
        "branch_id": op.branch_id,
        "action": op.action,
        "status": op.status,
        "failures_count": 1 if op.error and finished else 0,
        "created_at": iso(op.created_at),
        "updated_at": iso(op.updated_at),
        "total_duration_ms": min(duration, 2**31 - 1),
    }
    return out | _optional({"endpoint_id": op.endpoint_id, "error": op.error if finished else None})


def endpoint_json(ep: EndpointRecord, project_id: str) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "id": ep.id,
        "project_id": project_id,
        "branch_id": ep.branch_id,
        "autoscaling_limit_min_cu": 0.25,
        "autoscaling_limit_max_cu": 0.25,
        "region_id": REGION,
        "type": ep.type,
        "current_state": "active",
        "settings": {},
        "pooler_enabled": False,
        "pooler_mode": "transaction",
        "disabled": False,
        "passwordless_access": False,
        "creation_source": "console",
        "created_at": iso(ep.created_at),
        "updated_at": iso(ep.created_at),
        "proxy_host": "127.0.0.1",
        "suspend_timeout_seconds": 0,
        "provisioner": PROVISIONER,
    }


def project_json(
    project_id: str, pg_version: int, retention: int, created_at: datetime
) -> dict[str, Any]:
    usage = dict.fromkeys(
        (
            "active_time_seconds",
            "compute_time_seconds",
            "written_data_bytes",
            "data_transfer_bytes",
            "data_storage_bytes_hour",
            "cpu_used_sec",
            "branch_logical_size_limit",
            "branch_logical_size_limit_bytes",
        ),
        0,
    )
    return usage | {
        "id": project_id,
        "platform_id": "aws",
        "region_id": REGION,
        "name": project_id,
        "provisioner": PROVISIONER,
        "pg_version": pg_version,
        "proxy_host": "127.0.0.1",
        "store_passwords": True,
        "creation_source": "console",
        "history_retention_seconds": retention,
        "created_at": iso(created_at),
        "updated_at": iso(created_at),
        "consumption_period_start": iso(created_at),
        "consumption_period_end": iso(created_at + timedelta(days=30)),
        "owner_id": "fake-owner",
    }
