"""The Cloud SQL Admin API v1 calls the rollback steps need, through google-api-python-client.

Each call goes through the retry policy of ``providers.cloudsql.retrying`` (the library's
own retries are off), and every failure becomes one :class:`CloudSqlError` line with
Google's message. Operations are polled until ``DONE``, and ``DONE`` is not success: an
operation's ``error`` makes :meth:`CloudSqlClient.wait` raise with Google's messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.auth.exceptions import RefreshError
from googleapiclient.errors import HttpError

from providers.cloudsql.auth import HOW_TO_AUTHENTICATE, build_service
from providers.cloudsql.config import CloudSqlConfig
from providers.cloudsql.models import (
    BackupRun,
    CloudSqlError,
    Instance,
    Operation,
    format_time,
    parse_time,
)
from providers.cloudsql.retrying import TRANSPORT_ERRORS, http_error, retrying, transport_error

MAX_PAGES = 50


class CloudSqlClient:
    """One project's Admin API (``cfg.project``); built per step, it is not thread-safe."""

    def __init__(self, cfg: CloudSqlConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self.project = cfg.project
        self._sleep = sleep
        self._api = build_service(cfg)

    def __repr__(self) -> str:
        return f"CloudSqlClient(project={self.project!r})"

    # -- instances ----------------------------------------------------------------------------

    def get_instance(self, name: str) -> Instance:
        data = self._call("GET", "instances.get", self._api.instances().get, instance=name)
        return self._parse(lambda: Instance.from_api(data))

    def find_instance(self, name: str) -> Instance | None:
        """The instance, or None when Cloud SQL answers 404 (no such instance)."""
        try:
            return self.get_instance(name)
        except CloudSqlError as exc:
            if exc.status == 404:
                return None
            raise

    def clone(self, source: str, destination: str, point_in_time: datetime) -> Operation:
        """A NEW instance ``destination`` holding ``source`` as it was at ``point_in_time``."""
        body = {
            "cloneContext": {
                "kind": "sql#cloneContext",
                "destinationInstanceName": destination,
                "pointInTime": format_time(point_in_time),
            }
        }
        return self._operation(
            "POST", "instances.clone", self._api.instances().clone, instance=source, body=body
        )

    def restore_backup(self, instance: str, backup_id: str, source_instance: str) -> Operation:
        """Overwrite ``instance`` in place with backup run ``backup_id`` of ``source_instance``."""
        body = {
            "restoreBackupContext": {
                "kind": "sql#restoreBackupContext",
                "backupRunId": backup_id,
                "instanceId": source_instance,
                "project": self.project,
            }
        }
        return self._operation(
            "POST",
            "instances.restoreBackup",
            self._api.instances().restoreBackup,
            instance=instance,
            body=body,
        )

    def delete_instance(self, name: str) -> Operation:
        """Delete instance ``name`` (no final backup): only ever a copy rollbot made."""
        return self._operation(
            "DELETE", "instances.delete", self._api.instances().delete, instance=name
        )

    def latest_recovery_time(self, name: str) -> datetime | None:
        """The latest time instance ``name`` can be cloned to, if Cloud SQL says one."""
        data = self._call(
            "GET",
            "projects.instances.getLatestRecoveryTime",
            self._api.projects().instances().getLatestRecoveryTime,
            instance=name,
        )
        return self._parse(lambda: parse_time(data.get("latestRecoveryTime")))

    # -- backup runs --------------------------------------------------------------------------

    def backup_runs(self, instance: str) -> list[BackupRun]:
        """Every backup run of the instance, newest first (the API's order), all pages."""
        runs: list[BackupRun] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            extra = {"pageToken": token} if token else {}
            data = self._call(
                "GET", "backupRuns.list", self._api.backupRuns().list, instance=instance, **extra
            )
            runs += self._parse(lambda d=data: [BackupRun.from_api(r) for r in d.get("items", [])])
            token = data.get("nextPageToken")
            if not token:
                break
        return sorted(runs, key=lambda r: r.started.timestamp() if r.started else 0, reverse=True)

    def backup_run(self, instance: str, backup_id: str) -> BackupRun:
        data = self._call(
            "GET", "backupRuns.get", self._api.backupRuns().get, instance=instance, id=backup_id
        )
        return self._parse(lambda: BackupRun.from_api(data))

    def insert_backup(self, instance: str, description: str) -> Operation:
        """Start an on-demand backup run."""
        return self._operation(
            "POST",
            "backupRuns.insert",
            self._api.backupRuns().insert,
            instance=instance,
            body={"kind": "sql#backupRun", "description": description},
        )

    # -- operations ---------------------------------------------------------------------------

    def operation(self, name: str) -> Operation:
        data = self._call("GET", "operations.get", self._api.operations().get, operation=name)
        return self._parse(lambda: Operation.from_api(data))

    def wait(
        self,
        name: str,
        *,
        on_progress: Callable[[str], None] | None = None,
        poll_seconds: float = 5.0,
        timeout_seconds: float = 7200.0,
    ) -> Operation:
        """Poll ``operations.get`` until DONE; raise if it ended with an error or took too long."""
        started = time.monotonic()
        while True:
            op = self.operation(name)
            if op.done:
                if op.errors:
                    raise CloudSqlError(
                        f"Cloud SQL operation {op.operation_type} ({op.name}) failed: "
                        + "; ".join(op.errors)
                    )
                return op
            elapsed = time.monotonic() - started
            if elapsed >= timeout_seconds:
                raise CloudSqlError(
                    f"Cloud SQL operation {op.operation_type} ({op.name}) still {op.status} "
                    f"after {elapsed:.0f} s; it may still finish: check the Cloud SQL console"
                )
            if on_progress is not None:
                on_progress(f"Cloud SQL {op.operation_type} ({op.name}): {op.status}")
            self._sleep(poll_seconds)

    # -- HTTP ---------------------------------------------------------------------------------

    def _operation(self, method: str, name: str, build: Callable[..., Any], **kw: Any) -> Operation:
        data = self._call(method, name, build, **kw)
        return self._parse(lambda: Operation.from_api(data))

    def _call(self, method: str, name: str, build: Callable[..., Any], **kw: Any) -> dict:
        """One API call with the retry policy; failures become one CloudSqlError line."""
        policy = retrying(
            method, name, max_wait_seconds=self.cfg.api_wait_seconds, sleep=self._sleep
        )
        try:
            data = policy(lambda: build(project=self.project, **kw).execute(num_retries=0))
        except HttpError as exc:
            raise http_error(exc, method, name, self.project) from None
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, method, name) from None
        except RefreshError as exc:
            raise CloudSqlError(
                f"Google credentials could not be refreshed ({str(exc)[:200]}); "
                + HOW_TO_AUTHENTICATE
            ) from None
        if not isinstance(data, dict):
            raise CloudSqlError(f"Cloud SQL Admin API: the answer to {name} is not a JSON object")
        return data

    @staticmethod
    def _parse(build: Callable[[], Any]) -> Any:
        try:
            return build()
        except (KeyError, TypeError, ValueError) as exc:
            raise CloudSqlError(
                f"Cloud SQL Admin API: unexpected answer (missing or bad field {exc})"
            ) from None
