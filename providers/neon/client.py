"""A small synchronous client for the Neon API v2: the calls branch rollback needs.

It follows the published OpenAPI document (paths, parameters, bodies); the
rollback steps use it to find branches, create a restore point, restore, switch the
default branch and wait on the operations each change starts. Failures become one
:class:`NeonError` line a person can act on; the API key never appears in one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from bot.redact import register_secret
from providers.neon.models import Branch, NeonError, Operation, format_time
from providers.neon.retrying import (
    RetryableStatus,
    is_retryable_status,
    retrying,
    status_error,
    transport_error,
)

__all__ = ["Branch", "NeonClient", "NeonError", "Operation"]

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 1000
NAMES_SHOWN = 5


def _seg(value: str) -> str:
    """One path segment, quoted so an odd id can never reach another endpoint."""
    return quote(value, safe="")


class NeonClient:
    """One Neon project through the API v2; use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        project_id: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        max_wait_seconds: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        register_secret(api_key)
        self.project_id = project_id
        self.max_wait_seconds = max_wait_seconds
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": "rollbot",
            },
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"NeonClient(project_id={self.project_id!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NeonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- project and branches -------------------------------------------------------------

    @property
    def _project(self) -> str:
        return f"/projects/{_seg(self.project_id)}"

    def _branch_path(self, branch_id: str, suffix: str = "") -> str:
        return f"{self._project}/branches/{_seg(branch_id)}{suffix}"

    def history_retention(self) -> timedelta:
        """How far back a branch can be restored (the project's shared history window)."""
        data = self._json("GET", self._project)
        return self._parse(
            lambda: timedelta(seconds=int(data["project"]["history_retention_seconds"]))
        )

    def list_branches(self) -> list[Branch]:
        """Every branch of the project, following ``pagination.next`` to the last page."""
        return list(self._iter_branches())

    def _iter_branches(self) -> Iterator[Branch]:
        seen: set[str] = set()
        cursor: str | None = None
        params: dict[str, Any] = {"limit": PAGE_SIZE, "sort_by": "created_at", "sort_order": "asc"}
        for _ in range(MAX_PAGES):
            query = {**params, "cursor": cursor} if cursor else params
            data = self._json("GET", f"{self._project}/branches", params=query)
            page = self._parse(lambda d=data: [Branch.from_api(b) for b in d["branches"]])
            fresh = [b for b in page if b.id not in seen]
            seen.update(b.id for b in fresh)
            yield from fresh
            # Stop on an empty or repeated page too: a server that always sends a cursor
            # must not keep rollbot paging forever.
            next_cursor = (data.get("pagination") or {}).get("next")
            if not fresh or not next_cursor or next_cursor == cursor:
                return
            cursor = next_cursor

    def get_branch(self, branch_id: str) -> Branch:
        data = self._json("GET", self._branch_path(branch_id))
        return self._parse(lambda: Branch.from_api(data["branch"]))

    def find_branch(self, name_or_id: str) -> Branch:
        """The branch with this id or exact name; people name branches, configs hold ids."""
        branches = self.list_branches()
        for branch in branches:
            if branch.id == name_or_id:
                return branch
        named = [b for b in branches if b.name == name_or_id]
        if len(named) == 1:
            return named[0]
        if named:
            ids = ", ".join(b.id for b in named)
            raise NeonError(f"several Neon branches are named {name_or_id!r} ({ids}): use an id")
        names = [b.name for b in branches]
        shown = ", ".join(names[:NAMES_SHOWN]) or "none"
        more = f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
        raise NeonError(
            f"no branch named {name_or_id!r} in Neon project {self.project_id}; "
            f"its branches: {shown}{more}"
        )

    def create_branch(
        self, parent_id: str, name: str, *, parent_timestamp: datetime | None = None
    ) -> tuple[Branch, list[Operation]]:
        """A child of ``parent_id`` (at its head or at ``parent_timestamp``).

        It gets one read_write endpoint so the app or a check can connect to it.
        """
        branch: dict[str, Any] = {"parent_id": parent_id, "name": name}
        if parent_timestamp is not None:
            branch["parent_timestamp"] = format_time(parent_timestamp)
        body = {"branch": branch, "endpoints": [{"type": "read_write"}]}
        data = self._json("POST", f"{self._project}/branches", json=body, ok=(200, 201))
        return self._branch_and_operations(data)

    def delete_branch(self, branch_id: str) -> list[Operation]:
        """Delete a branch; one that is already gone (204 or 404) is not an error."""
        path = self._branch_path(branch_id)
        response = self._send("DELETE", path, ok=(200, 204), absent_ok=True)
        if response.status_code in (204, 404):
            return []
        data = self._decode(response, "DELETE", path)
        return self._parse(lambda: [Operation.from_api(o) for o in data.get("operations", [])])

    def set_as_default(self, branch_id: str) -> tuple[Branch, list[Operation]]:
        """Make the branch the project's default (the API's current name for "primary")."""
        data = self._json("POST", self._branch_path(branch_id, "/set_as_default"))
        return self._branch_and_operations(data)

    def restore_branch(
        self,
        branch_id: str,
        source_branch_id: str,
        *,
        source_timestamp: datetime | None,
        preserve_under_name: str,
    ) -> tuple[Branch, list[Operation]]:
        """Restore ``branch_id`` from ``source_branch_id`` (at ``source_timestamp``, or its head).

        ``preserve_under_name`` is required: rollbot never drops the state it replaces,
        so the restore itself can be undone.
        """
        if not preserve_under_name.strip():
            raise ValueError("preserve_under_name must name the branch that keeps the old state")
        body: dict[str, Any] = {
            "source_branch_id": source_branch_id,
            "preserve_under_name": preserve_under_name,
        }
        if source_timestamp is not None:
            body["source_timestamp"] = format_time(source_timestamp)
        data = self._json("POST", self._branch_path(branch_id, "/restore"), json=body)
        return self._branch_and_operations(data)

    def compare_schema(
        self,
        branch_id: str,
        *,
        db_name: str,
        base_branch_id: str | None = None,
        timestamp: datetime | None = None,
        base_timestamp: datetime | None = None,
    ) -> str:
        """The schema diff text between the branch and a base (its parent by default)."""
        params: dict[str, Any] = {"db_name": db_name}
        if base_branch_id is not None:
            params["base_branch_id"] = base_branch_id
        if timestamp is not None:
            params["timestamp"] = format_time(timestamp)
        if base_timestamp is not None:
            params["base_timestamp"] = format_time(base_timestamp)
        data = self._json("GET", self._branch_path(branch_id, "/compare_schema"), params=params)
        return str(data.get("diff") or "")

    def connection_uri(
        self, branch_id: str, *, database_name: str, role_name: str, pooled: bool = False
    ) -> str:
        """A postgres:// URI for the branch's read_write endpoint; its password is registered
        as a secret before it is returned, so no message can show it."""
        params = {
            "branch_id": branch_id,
            "database_name": database_name,
            "role_name": role_name,
            "pooled": pooled,
        }
        data = self._json("GET", f"{self._project}/connection_uri", params=params)
        uri = self._parse(lambda: str(data["uri"]))
        register_secret(urlsplit(uri).password)
        return uri

    # -- operations ---------------------------------------------------------------------------

    def operation(self, operation_id: str) -> Operation:
        data = self._json("GET", f"{self._project}/operations/{_seg(operation_id)}")
        return self._parse(lambda: Operation.from_api(data["operation"]))

    def wait(
        self,
        operations: Sequence[Operation],
        *,
        on_progress: Callable[[str], None] | None = None,
        poll_seconds: float = 1.0,
        timeout_seconds: float = 600.0,
    ) -> list[Operation]:
        """Poll until every operation is done; the final states, in the given order.

        A change is not in effect until its operations finish, so the next step must
        not start before. ``on_progress`` gets one line per unfinished operation per poll.
        """
        current = {op.id: op for op in operations}
        started = time.monotonic()
        slept = 0.0
        while True:
            self._raise_if_failed(current.values())
            pending = [op for op in current.values() if not op.done]
            if not pending:
                return [current[op.id] for op in operations]
            elapsed = max(time.monotonic() - started, slept)
            if elapsed >= timeout_seconds:
                raise self._timed_out(pending, elapsed)
            if on_progress is not None:
                for op in pending:
                    on_progress(f"{op.action}: {op.status} ({elapsed:.0f} s)")
            self._sleep(poll_seconds)
            slept += poll_seconds
            for op in pending:
                current[op.id] = self.operation(op.id)

    @staticmethod
    def _raise_if_failed(operations: Iterable[Operation]) -> None:
        for op in operations:
            if op.failed:
                detail = f": {op.error}" if op.error else ""
                raise NeonError(f"Neon operation {op.action} ({op.id}) {op.status}{detail}")

    @staticmethod
    def _timed_out(pending: list[Operation], elapsed: float) -> NeonError:
        names = ", ".join(f"{op.action} ({op.id}) {op.status}" for op in pending)
        return NeonError(
            f"Neon operations not finished after {elapsed:.0f} s: {names}", retryable=True
        )

    # -- HTTP -------------------------------------------------------------------------------------

    def _branch_and_operations(self, data: dict) -> tuple[Branch, list[Operation]]:
        return self._parse(
            lambda: (
                Branch.from_api(data["branch"]),
                [Operation.from_api(o) for o in data.get("operations", [])],
            )
        )

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
    ) -> dict:
        response = self._send(method, path, params=params, json=json, ok=ok)
        return self._decode(response, method, path)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
        absent_ok: bool = False,
    ) -> httpx.Response:
        """One request with the retry policy; any answer outside ``ok`` becomes a NeonError."""
        policy = retrying(method, path, max_wait_seconds=self.max_wait_seconds, sleep=self._sleep)
        try:
            response = policy(self._send_once, method, path, params, json)
        except RetryableStatus as exc:
            raise status_error(exc.response, method, path, gave_up=True) from None
        except httpx.TransportError as exc:
            raise transport_error(exc, method, path) from None
        if response.status_code in ok or (absent_ok and response.status_code == 404):
            return response
        raise status_error(response, method, path)

    def _send_once(
        self, method: str, path: str, params: dict[str, Any] | None, json: Any
    ) -> httpx.Response:
        """One attempt; a status worth retrying is raised for the policy to see."""
        try:
            response = self._http.request(method, path, params=params, json=json)
        except httpx.TransportError as exc:
            log.debug("Neon API %s %s -> %s", method, path, type(exc).__name__)
            raise
        log.debug("Neon API %s %s -> %d", method, path, response.status_code)
        if is_retryable_status(method, response.status_code):
            raise RetryableStatus(response)
        return response

    def _decode(self, response: httpx.Response, method: str, path: str) -> dict:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise NeonError(
                f"Neon API: the answer is not a JSON object (HTTP {response.status_code}, "
                f"{method} {path})"
            )
        return data

    @staticmethod
    def _parse(build: Callable[[], Any]) -> Any:
        """Build a result from a response; a missing field is Neon's change, said plainly."""
        try:
            return build()
        except (KeyError, TypeError, ValueError) as exc:
            raise NeonError(f"Neon API: unexpected answer (missing or bad field {exc})") from None
