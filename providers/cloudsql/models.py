"""What rollbot reads from Cloud SQL Admin API v1 resources, and its one error type.

Only the fields the rollback steps use are kept; the API adds fields over time, so the
rest of a resource is ignored rather than validated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.errors import ProviderError
from bot.redact import redact


class CloudSqlError(ProviderError):
    """The Admin API refused or failed; one line, safe to show a person.

    ``status`` is the HTTP status (None without a response)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(redact(" ".join(message.split())))
        self.status = status


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (RFC 3339, e.g. ``2012-11-15T16:19:00.094Z``) as an aware datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``, as Google writes them."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Operation:
    name: str
    status: str  # PENDING, RUNNING, DONE
    operation_type: str
    errors: tuple[str, ...] = ()  # Google's messages when DONE with an error
    backup_id: str | None = None  # backupRuns.insert: the backup run it makes

    @property
    def done(self) -> bool:
        return self.status == "DONE"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Operation:
        errors = (data.get("error") or {}).get("errors") or []
        messages = tuple(
            f"{e.get('message') or 'no message'}" + (f" ({e['code']})" if e.get("code") else "")
            for e in errors
        )
        if data.get("error") and not messages:
            messages = ("the operation reported an error without a message",)
        return cls(
            name=str(data["name"]),
            status=str(data.get("status") or "SQL_OPERATION_STATUS_UNSPECIFIED"),
            operation_type=str(data.get("operationType") or "operation"),
            errors=messages,
            backup_id=(data.get("backupContext") or {}).get("backupId"),
        )


@dataclass(frozen=True)
class BackupRun:
    id: str
    status: str  # SUCCESSFUL, RUNNING, FAILED, ...
    type: str  # AUTOMATED, ON_DEMAND
    started: datetime | None
    description: str = ""

    @property
    def when(self) -> str:
        return f"{self.started:%Y-%m-%d %H:%M:%S} UTC" if self.started else "time unknown"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> BackupRun:
        return cls(
            id=str(data["id"]),
            status=str(data.get("status") or "SQL_BACKUP_RUN_STATUS_UNSPECIFIED"),
            type=str(data.get("type") or "SQL_BACKUP_RUN_TYPE_UNSPECIFIED"),
            started=parse_time(
                data.get("startTime") or data.get("windowStartTime") or data.get("enqueuedTime")
            ),
            description=str(data.get("description") or ""),
        )


@dataclass(frozen=True)
class Instance:
    name: str
    project: str
    state: str
    region: str | None
    tier: str | None
    database_version: str | None
    disk_gb: int | None
    pitr_enabled: bool
    backups_enabled: bool
    log_retention_days: int | None
    created: datetime | None
    ip_addresses: tuple[tuple[str, str], ...]  # (type, address)

    def ip(self, kind: str) -> str | None:
        return next((addr for t, addr in self.ip_addresses if t == kind), None)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Instance:
        settings = data.get("settings") or {}
        backups = settings.get("backupConfiguration") or {}
        disk = settings.get("dataDiskSizeGb")
        retention = backups.get("transactionLogRetentionDays")
        return cls(
            name=str(data["name"]),
            project=str(data.get("project") or ""),
            state=str(data.get("state") or "SQL_INSTANCE_STATE_UNSPECIFIED"),
            region=data.get("region"),
            tier=settings.get("tier"),
            database_version=data.get("databaseVersion"),
            disk_gb=int(disk) if disk else None,
            pitr_enabled=bool(backups.get("pointInTimeRecoveryEnabled")),
            backups_enabled=bool(backups.get("enabled")),
            log_retention_days=int(retention) if retention else None,
            created=parse_time(data.get("createTime")),
            ip_addresses=tuple(
                (str(ip.get("type") or ""), str(ip["ipAddress"]))
                for ip in data.get("ipAddresses") or []
                if ip.get("ipAddress")
            ),
        )
