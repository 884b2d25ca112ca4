"""What the fake Cloud SQL project does with each Admin API method it models.

Refusals follow Google's: 404 for an unknown instance (to get, clone or delete), backup run
or operation, 409 for a clone onto an existing name, 400 for a clone Cloud SQL cannot make
(PITR off, a time outside the log window or in the future) or a restore from a backup run
that is not SUCCESSFUL.
Changes start an operation; their effect lands when the operation is polled to DONE.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from tests.cloudsql_api.resources import (
    FakeBackupRun,
    FakeInstance,
    FakeOperation,
    rfc3339,
    utc_now,
)

Hook = Callable[[FakeInstance], None]


class ApiError(Exception):
    """A Google error answer: ``{"error": {"code", "message", "errors", "status"}}``."""

    STATUS: ClassVar[dict[int, str]] = {
        400: "INVALID_ARGUMENT",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
    }

    def __init__(self, status: int, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [{"domain": "global", "reason": self.reason, "message": self.message}],
                "status": self.STATUS.get(self.status, "UNKNOWN"),
            }
        }


@dataclass
class Call:
    method: str  # "instances.clone"
    path: dict[str, str]
    query: dict[str, list[str]]
    body: Any


@dataclass
class FakeProject:
    project: str
    running_polls: int = 1
    running_polls_for: dict[str, int] = field(default_factory=dict)  # by operationType
    page_size: int = 2
    clone_ip: str = "127.0.0.1"
    lock: threading.RLock = field(default_factory=threading.RLock)
    instances: dict[str, FakeInstance] = field(default_factory=dict)
    backups: list[FakeBackupRun] = field(default_factory=list)
    operations: dict[str, FakeOperation] = field(default_factory=dict)
    # (operationType or None for any, code, message): the next such operation ends in error
    failing_operations: list[tuple[str | None, str, str]] = field(default_factory=list)
    on_clone: Hook | None = None  # the tests' stand-in for the data a clone holds
    on_restore: Hook | None = None
    deleted: list[str] = field(default_factory=list)  # instances.delete that reached DONE
    recovery_lag: timedelta = timedelta(seconds=1)  # latestRecoveryTime is this far behind
    _ids: Any = field(default_factory=lambda: itertools.count(1_700_000_000_001))

    # -- helpers --------------------------------------------------------------------------

    def instance(self, name: str) -> FakeInstance:
        found = self.instances.get(name)
        if found is None:
            raise ApiError(404, "The Cloud SQL instance does not exist.", "instanceDoesNotExist")
        return found

    def _start(
        self, kind: str, instance: str, effect: Callable[[bool], None], backup_id: str | None = None
    ) -> dict[str, Any]:
        error = None
        for failing in self.failing_operations:
            if failing[0] in (None, kind):
                self.failing_operations.remove(failing)
                error = failing[1:]
                break
        op = FakeOperation(
            name=str(uuid.uuid4()),
            operation_type=kind,
            instance=instance,
            running_polls=self.running_polls_for.get(kind, self.running_polls),
            effect=effect,
            error=error,
            backup_id=backup_id,
        )
        self.operations[op.name] = op
        return op.resource(self.project)

    # -- methods --------------------------------------------------------------------------

    def handle(self, call: Call) -> dict[str, Any]:
        if call.path.get("project") != self.project:
            raise ApiError(
                403, "The client is not authorized to make this request.", "notAuthorized"
            )
        handler = getattr(self, "do_" + call.method.replace(".", "_"), None)
        if handler is None:
            raise ApiError(501, f"the fake Cloud SQL API does not model {call.method}")
        return handler(call)

    def do_instances_get(self, call: Call) -> dict[str, Any]:
        return self.instance(call.path["instance"]).resource(self.project)

    def do_instances_clone(self, call: Call) -> dict[str, Any]:
        source = self.instance(call.path["instance"])
        context = call.body["cloneContext"]
        name = context["destinationInstanceName"]
        if name in self.instances:
            raise ApiError(409, "The Cloud SQL instance already exists.", "instanceAlreadyExists")
        point = context.get("pointInTime")
        if point:
            self._check_point(source, datetime.fromisoformat(point.replace("Z", "+00:00")))

        def effect(failed: bool) -> None:
            if failed:
                return
            made = FakeInstance(
                name,
                ip=self.clone_ip,
                region=source.region,
                tier=source.tier,
                database_version=source.database_version,
                disk_gb=source.disk_gb,
                pitr_enabled=source.pitr_enabled,
                retention_days=source.retention_days,
                created=utc_now(),
                cloned_from=(source.name, point or "latest"),
            )
            self.instances[name] = made
            if self.on_clone:
                self.on_clone(made)

        return self._start("CLONE", source.name, effect)

    def _check_point(self, source: FakeInstance, moment: datetime) -> None:
        now = utc_now()
        if not source.pitr_enabled:
            raise ApiError(400, "Point-in-time recovery is not enabled for this instance.")
        window = timedelta(days=source.retention_days or 7)
        if moment > now or moment < max(now - window, source.created):
            raise ApiError(400, "The requested point in time is outside the recovery window.")

    def do_instances_restoreBackup(self, call: Call) -> dict[str, Any]:
        target = self.instance(call.path["instance"])
        context = (call.body or {}).get("restoreBackupContext") or {}
        run_id = context.get("backupRunId")
        run = next((b for b in self.backups if b.id == run_id), None)
        if run is None or run.instance != context.get("instanceId"):
            raise ApiError(404, "The backup run does not exist.", "backupRunNotFound")
        if run.status != "SUCCESSFUL":
            raise ApiError(400, f"The backup run is {run.status}; only a successful one restores.")

        def effect(failed: bool) -> None:
            if not failed:
                target.restored_from.append(run.id)
                if self.on_restore:
                    self.on_restore(target)

        return self._start("RESTORE_VOLUME", target.name, effect)

    def do_instances_delete(self, call: Call) -> dict[str, Any]:
        """PENDING_DELETE at once; gone when the DELETE operation is DONE (unless it failed)."""
        target = self.instance(call.path["instance"])
        before, target.state = target.state, "PENDING_DELETE"

        def effect(failed: bool) -> None:
            if failed:
                target.state = before
            else:
                self.instances.pop(target.name, None)
                self.deleted.append(target.name)

        return self._start("DELETE", target.name, effect)

    def do_projects_instances_getLatestRecoveryTime(self, call: Call) -> dict[str, Any]:
        source = self.instance(call.path["instance"])
        if not source.pitr_enabled:
            raise ApiError(400, "Point-in-time recovery is not enabled for this instance.")
        now = utc_now()
        window = timedelta(days=source.retention_days or 7)
        return {
            "kind": "sql#getLatestRecoveryTime",
            "latestRecoveryTime": rfc3339(now - self.recovery_lag),
            "earliestRecoveryTime": rfc3339(max(now - window, source.created)),
        }

    def do_backupRuns_insert(self, call: Call) -> dict[str, Any]:
        instance = self.instance(call.path["instance"])
        run = FakeBackupRun(
            str(next(self._ids)),
            instance.name,
            status="ENQUEUED",
            type="ON_DEMAND",
            description=(call.body or {}).get("description", ""),
        )
        self.backups.append(run)

        def effect(failed: bool) -> None:
            run.status = "FAILED" if failed else "SUCCESSFUL"

        return self._start("BACKUP_VOLUME", instance.name, effect, backup_id=run.id)

    def do_backupRuns_list(self, call: Call) -> dict[str, Any]:
        instance = self.instance(call.path["instance"])
        runs = sorted(
            (b for b in self.backups if b.instance == instance.name),
            key=lambda b: b.started,
            reverse=True,
        )
        start = int((call.query.get("pageToken") or ["0"])[0])
        size = int((call.query.get("maxResults") or [str(self.page_size)])[0])
        page = runs[start : start + size]
        data: dict[str, Any] = {
            "kind": "sql#backupRunsList",
            "items": [b.resource(self.project) for b in page],
        }
        if start + size < len(runs):
            data["nextPageToken"] = str(start + size)
        return data

    def do_backupRuns_get(self, call: Call) -> dict[str, Any]:
        self.instance(call.path["instance"])
        for run in self.backups:
            if run.id == call.path["id"] and run.instance == call.path["instance"]:
                return run.resource(self.project)
        raise ApiError(404, "The backup run does not exist.", "backupRunNotFound")

    def do_operations_get(self, call: Call) -> dict[str, Any]:
        op = self.operations.get(call.path["operation"])
        if op is None:
            raise ApiError(404, "The operation does not exist.", "operationDoesNotExist")
        op.advance()
        op.seen.append(op.status)
        if op.status == "RUNNING":
            for run in self.backups:
                if run.id == op.backup_id and run.status == "ENQUEUED":
                    run.status = "RUNNING"
        return op.resource(self.project)
