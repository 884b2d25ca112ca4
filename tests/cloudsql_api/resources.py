"""The fake Cloud SQL project's resources, rendered as the discovery document's schemas."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass
class FakeInstance:
    name: str
    ip: str = "192.0.2.10"  # TEST-NET-1: nothing answers there
    region: str = "us-central1"
    tier: str = "db-custom-2-7680"
    database_version: str = "POSTGRES_16"
    disk_gb: int | None = 100
    pitr_enabled: bool = True
    retention_days: int | None = 7
    created: datetime = field(default_factory=lambda: utc_now() - timedelta(days=30))
    state: str = "RUNNABLE"
    cloned_from: tuple[str, str] | None = None  # (source, pointInTime)
    restored_from: list[str] = field(default_factory=list)  # backup run ids, in order

    def resource(self, project: str) -> dict[str, Any]:
        backups: dict[str, Any] = {
            "kind": "sql#backupConfiguration",
            "enabled": True,
            "pointInTimeRecoveryEnabled": self.pitr_enabled,
            "startTime": "03:00",
        }
        if self.retention_days is not None:
            backups["transactionLogRetentionDays"] = self.retention_days
        settings: dict[str, Any] = {
            "kind": "sql#settings",
            "tier": self.tier,
            "availabilityType": "ZONAL",
            "backupConfiguration": backups,
        }
        if self.disk_gb is not None:
            settings["dataDiskSizeGb"] = str(self.disk_gb)
        return {
            "kind": "sql#instance",
            "name": self.name,
            "project": project,
            "state": self.state,
            "region": self.region,
            "databaseVersion": self.database_version,
            "backendType": "SECOND_GEN",
            "instanceType": "CLOUD_SQL_INSTANCE",
            "connectionName": f"{project}:{self.region}:{self.name}",
            "createTime": rfc3339(self.created),
            "ipAddresses": [{"type": "PRIMARY", "ipAddress": self.ip}],
            "settings": settings,
            "selfLink": f"https://sqladmin.googleapis.com/v1/projects/{project}/instances/{self.name}",
        }


@dataclass
class FakeBackupRun:
    id: str
    instance: str
    status: str = "SUCCESSFUL"
    type: str = "AUTOMATED"
    started: datetime = field(default_factory=utc_now)
    description: str = ""

    def resource(self, project: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": "sql#backupRun",
            "id": self.id,
            "instance": self.instance,
            "status": self.status,
            "type": self.type,
            "enqueuedTime": rfc3339(self.started),
            "startTime": rfc3339(self.started),
            "windowStartTime": rfc3339(self.started),
            "backupKind": "SNAPSHOT",
            "selfLink": f"https://sqladmin.googleapis.com/v1/projects/{project}/instances/"
            f"{self.instance}/backupRuns/{self.id}",
        }
        if self.status == "SUCCESSFUL":
            data["endTime"] = rfc3339(self.started + timedelta(minutes=3))
        if self.description:
            data["description"] = self.description
        return data


@dataclass
class FakeOperation:
    name: str
    operation_type: str  # CLONE, BACKUP_VOLUME, RESTORE_VOLUME, DELETE
    instance: str
    running_polls: int  # GETs answered RUNNING before DONE
    effect: Callable[[bool], None]  # called once when DONE; True when it ended with an error
    status: str = "PENDING"
    error: tuple[str, str] | None = None  # (code, message) when it ends with an error
    backup_id: str | None = None
    inserted: datetime = field(default_factory=utc_now)
    polls: int = 0
    seen: list[str] = field(default_factory=list)  # the status each poll answered

    def advance(self) -> None:
        """One operations.get: PENDING for the first poll, RUNNING for ``running_polls``
        more, then DONE (its effect lands then)."""
        self.polls += 1
        if self.status == "DONE":
            return
        if self.polls > 1 + self.running_polls:
            self.finish()
        elif self.polls > 1:
            self.status = "RUNNING"

    def finish(self) -> None:
        if self.status != "DONE":
            self.status = "DONE"
            self.effect(self.error is not None)

    def resource(self, project: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": "sql#operation",
            "name": self.name,
            "status": self.status,
            "operationType": self.operation_type,
            "targetId": self.instance,
            "targetProject": project,
            "targetLink": f"https://sqladmin.googleapis.com/v1/projects/{project}/instances/"
            f"{self.instance}",
            "selfLink": f"https://sqladmin.googleapis.com/v1/projects/{project}/operations/"
            f"{self.name}",
            "insertTime": rfc3339(self.inserted),
            "user": "rollbot-test@example.iam.gserviceaccount.com",
        }
        if self.backup_id:
            data["backupContext"] = {"kind": "sql#backupContext", "backupId": self.backup_id}
        if self.status == "DONE" and self.error:
            code, message = self.error
            data["error"] = {
                "kind": "sql#operationErrors",
                "errors": [{"kind": "sql#operationError", "code": code, "message": message}],
            }
        return data
