"""A local fake of the Neon API v2, held to Neon's own OpenAPI document.

``NeonApiServer(cluster)`` serves ``http://127.0.0.1:<port>/api/v2`` from a background
thread. Every request is validated against ``SPEC_PATH`` with openapi-core before it is
handled (invalid: 400, recorded in ``violations``) and every response before it is sent
(a failing response is a bug in the fake, recorded too); leaving the ``with`` block
raises when anything was recorded. Branches are real databases on the throwaway
cluster (see ``tests.neon_api.branches`` for the history rule), so tests check data.

Operations apply their effect at once but report ``running`` for their first
``op_polls`` GETs; meanwhile any mutation answers 423, as Neon does.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from providers.postgres.cluster import ThrowawayCluster
from tests.neon_api.api import ROUTES, Call
from tests.neon_api.contract import (
    SPEC_PATH,
    RequestCheck,
    check_request,
    check_response,
    load_contract,
    spec_available,
)
from tests.neon_api.project import ApiError, NeonProject, Reply, utc_now
from tests.neon_api.resources import BranchRecord, Checkpoint, OperationRecord

__all__ = ["SPEC_PATH", "NeonApiServer", "RecordedRequest", "Violation", "spec_available"]


@dataclass
class RecordedRequest:
    method: str
    path: str  # under the base path: "/projects/proj-test/branches"
    query: dict[str, str]
    body: Any  # parsed JSON, the raw text if it was not JSON, None if empty
    status: int = 0


@dataclass
class Violation:
    kind: str  # "request", "response" or "error" (an exception in the fake)
    method: str
    path: str
    status: int
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.method} {self.path} -> {self.status}: {self.detail}"


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    message: str
    retry_after: float | None
    times: int


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        """The suite's output is for failures, not an access log."""


class NeonApiServer:
    def __init__(
        self,
        cluster: ThrowawayCluster,
        *,
        api_key: str = "neon-test-api-key",
        project_id: str = "proj-test",
        history_retention_seconds: int = 86400,
        op_polls: int = 2,
        page_size: int = 2,
        main_branch: str | None = "main",
        database_name: str = "neondb",
        clock: Callable[[], datetime] = utc_now,
        template_grace_seconds: float = 0.5,
        seed: int | None = None,
    ) -> None:
        """``main_branch``: name of a root default branch made at start (None: none).

        ``page_size``: branches per page when a list request has no ``limit``, small so
        clients must follow cursors. ``database_name``: the logical database every branch
        reports (its URI names the branch's physical database).
        """
        self.contract = load_contract()  # FileNotFoundError naming SPEC_PATH if missing
        self.cluster = cluster
        self.api_key = api_key
        self.page_size = page_size
        self.database_name = database_name
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self._faults: list[Fault] = []
        self._project = NeonProject(
            cluster,
            project_id=project_id,
            history_retention_seconds=history_retention_seconds,
            op_polls=op_polls,
            clock=clock,
            grace_seconds=template_grace_seconds,
            seed=seed,
        )
        self._main_branch = main_branch
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # lifecycle

    def start(self) -> NeonApiServer:
        try:
            if self._main_branch is not None:
                self.add_branch(self._main_branch, default=True)
            self._server = make_server(
                "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler
            )
        except BaseException:
            self.stop()  # no database left behind on the shared cluster
            raise
        self.url = f"http://127.0.0.1:{self._server.server_port}{self.contract.base_path}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # shutdown() waits one interval
            name="fake-neon-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            self._project.close()

    def __enter__(self) -> NeonApiServer:
        return self.start()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.stop()
        if not self.violations:
            return
        report = self._violation_report()
        if exc is not None:
            exc.add_note(report)
            return
        raise AssertionError(report)

    # inspection and setup for tests

    @property
    def lock(self) -> threading.RLock:
        """Held while a request is handled; hold it to read several things consistently."""
        return self._project.lock

    @property
    def project_id(self) -> str:
        return self._project.project_id

    @property
    def headers(self) -> dict[str, str]:
        """What a client sends: ``Authorization: Bearer <api_key>``."""
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def history_retention_seconds(self) -> int:
        return self._project.retention

    @history_retention_seconds.setter
    def history_retention_seconds(self, seconds: int) -> None:
        with self.lock:
            self._project.retention = seconds

    @property
    def op_polls(self) -> int:
        return self._project.op_polls

    @op_polls.setter
    def op_polls(self, polls: int) -> None:
        """Applies to operations created from now on."""
        with self.lock:
            self._project.op_polls = polls

    def add_branch(
        self,
        name: str,
        parent_id: str | None = None,
        default: bool = False,
        protected: bool = False,
    ) -> BranchRecord:
        """A branch made without the API: a root with an empty database, or a parent's copy."""
        with self.lock:
            p = self._project
            parent = p.branch(parent_id) if parent_id else None
            point = p.resolve(parent, None, None) if parent else None
            made = p.spawn(name, parent=parent, point=point, protected=protected)
            if default:
                p.set_default(made)
            return self._copy(made)

    def checkpoint(self, branch_id: str) -> Checkpoint:
        """Freeze the branch's current database as a point of its history (see the rule)."""
        with self.lock:
            return replace(self._project.add_checkpoint(self._project.branch(branch_id)))

    def branches(self) -> list[BranchRecord]:
        with self.lock:
            return [self._copy(b) for b in self._project.branches.values()]

    def branch(self, id_or_name: str) -> BranchRecord:
        """A copy of the branch with this id, or else the only one with this name."""
        with self.lock:
            found = [b for b in self._project.branches.values() if id_or_name in (b.id, b.name)]
            by_id = [b for b in found if b.id == id_or_name]
            if by_id or len(found) == 1:
                return self._copy((by_id or found)[0])
            raise KeyError(f"no single branch {id_or_name!r} among {len(found)} matches")

    def default_branch(self) -> BranchRecord:
        with self.lock:
            return self._copy(self._project.default_branch())

    def branch_url(self, branch_id: str) -> str:
        """The branch's current database, directly (no API call recorded)."""
        return self.cluster.url(self.branch(branch_id).database)

    def operations(self) -> list[OperationRecord]:
        with self.lock:
            return [replace(op) for op in self._project.operations.values()]

    def finish_operations(self) -> None:
        """Settle every running operation now, as if a client had polled them all."""
        with self.lock:
            for op in self._project.operations.values():
                op.remaining = 0
                op.poll(self._project.now())

    def fail_next_operation(self, error: str = "injected operation failure") -> None:
        """The next operation ends ``failed`` with ``error`` (its effect still happens)."""
        with self.lock:
            self._project.failing_operations.append(error)

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        message: str = "injected fault",
        retry_after: float | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` before doing anything.

        ``path_regex`` is searched in the path under the base path; ``method`` "*" is any.
        """
        fault = Fault(method.upper(), re.compile(path_regex), status, message, retry_after, times)
        with self.lock:
            self._faults.append(fault)

    def take_violations(self) -> list[Violation]:
        """Return and forget the violations, for a test that provokes them on purpose."""
        with self.lock:
            taken, self.violations = self.violations, []
            return taken

    def assert_no_violations(self) -> None:
        if self.violations:
            raise AssertionError(self._violation_report())

    def _violation_report(self) -> str:
        lines = "\n".join(f"  {v}" for v in self.violations)
        return f"the fake Neon API saw {len(self.violations)} contract violation(s):\n{lines}"

    def _copy(self, b: BranchRecord) -> BranchRecord:
        return replace(b, checkpoints=list(b.checkpoints), endpoint_ids=list(b.endpoint_ids))

    # HTTP

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self._respond(request)
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        base = self.contract.base_path
        under_base = request.path.startswith(base + "/")
        path = request.path.removeprefix(base) if under_base else request.path
        record = RecordedRequest(request.method, path, request.args.to_dict(), _body(request))
        with self.lock:
            self.requests.append(record)
        check = (
            check_request(self.contract, request) if under_base else RequestCheck("unknown_path")
        )
        reply = self._take_fault(request.method, path) or self._answer(request, check, path)
        response = _to_response(reply)
        record.status = response.status_code
        if check.outcome in ("unknown_path", "unknown_method", "invalid"):
            self._violate("request", record, check.detail or "path not under the base path")
        if check.outcome not in ("unknown_path", "unknown_method"):
            template = self.contract.template_for(path)
            for problem in check_response(self.contract, template, request, response):
                self._violate("response", record, problem)
        return response

    def _answer(self, request: Request, check: RequestCheck, path: str) -> Reply:
        if check.outcome == "unknown_path":
            return _error(ApiError(404, f"no such path: {request.path}"))
        if check.outcome == "unknown_method":
            return _error(ApiError(405, f"{request.method} is not allowed on {request.path}"))
        if check.outcome == "unauthenticated" or not self._authorized(request):
            return _error(ApiError(401, "authorization failed: missing or wrong API key"))
        if check.outcome == "invalid":
            return _error(ApiError(400, f"invalid request: {check.detail}"))
        template = self.contract.template_for(path)
        handler = ROUTES.get((request.method, template or ""))
        if handler is None:
            return _error(ApiError(501, f"the fake Neon API does not model {template}"))
        params = check.parameters
        call = Call(params.path, params.query, check.body, self.database_name, self.page_size)
        with self.lock:
            try:
                return handler(self._project, call)
            except ApiError as exc:
                return _error(exc)
            except Exception:
                detail = traceback.format_exc(limit=4)
                self.violations.append(Violation("error", request.method, path, 500, detail))
                return _error(ApiError(500, "internal error in the fake Neon API"))

    def _authorized(self, request: Request) -> bool:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and key.strip() == self.api_key

    def _take_fault(self, method: str, path: str) -> Reply | None:
        with self.lock:
            for fault in self._faults:
                if fault.method in ("*", method) and fault.pattern.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    reply = _error(ApiError(fault.status, fault.message))
                    if fault.retry_after is not None:
                        reply.headers["Retry-After"] = f"{fault.retry_after:g}"
                    return reply
        return None

    def _violate(self, kind: str, record: RecordedRequest, detail: str) -> None:
        with self.lock:
            self.violations.append(
                Violation(kind, record.method, record.path, record.status, detail)
            )


def _body(request: Request) -> Any:
    raw = request.get_data(as_text=True)
    if not raw:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(raw)
    return raw


def _error(exc: ApiError) -> Reply:
    body = {"request_id": str(uuid.uuid4()), "code": exc.code, "message": exc.message}
    return Reply(exc.status, body)


def _to_response(reply: Reply) -> Response:
    if reply.body is None:
        return Response(status=reply.status, headers=reply.headers)
    return Response(
        json.dumps(reply.body),
        status=reply.status,
        headers=reply.headers,
        mimetype="application/json",
    )
