"""A local fake of the Cloud SQL Admin API v1, held to Google's discovery document.

``CloudSqlApiServer()`` serves ``http://127.0.0.1:<port>/`` from a background thread
(stdlib ``http.server``). Every request is checked against ``SPEC_PATH`` before it is
handled (a violation answers 400 and is recorded) and every response before it is sent (a
bad one is a bug in the fake, recorded too); leaving the ``with`` block raises when
anything was recorded. Operations go PENDING -> RUNNING -> DONE across ``operations.get``
polls; ``fail_next_operation`` makes the next one end DONE with an ``error``.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.cloudsql_api.contract import Contract, load_contract
from tests.cloudsql_api.project import ApiError, Call, FakeProject
from tests.cloudsql_api.resources import FakeBackupRun, FakeInstance, FakeOperation

# Google's error envelope (not a schema of the discovery document, which lists successes).
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "status"],
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "status": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}


@dataclass
class RecordedRequest:
    method: str  # HTTP method
    path: str  # "/v1/projects/p/instances/i/clone"
    query: dict[str, list[str]]
    body: Any
    api_method: str | None = None  # "instances.clone"
    status: int = 0


@dataclass
class Violation:
    kind: str  # "request", "response" or "error" (an exception in the fake)
    method: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.method} {self.path}: {self.detail}"


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    message: str
    times: int
    retry_after: float | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """The suite's output is for failures, not an access log."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, body, headers = self.server.fake.respond(self.command, self.path, raw)
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: CloudSqlApiServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a test kills rollbot mid-request) is not the fake's bug."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class CloudSqlApiServer:
    def __init__(
        self, *, project: str = "rollbot-test", running_polls: int = 1, page_size: int = 2
    ) -> None:
        self.contract: Contract = load_contract()  # FileNotFoundError naming SPEC_PATH
        self.state = FakeProject(project, running_polls=running_polls, page_size=page_size)
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self._faults: list[Fault] = []
        self._server: _Server | None = None
        self.url = ""

    # lifecycle

    def __enter__(self) -> CloudSqlApiServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.url = f"http://127.0.0.1:{self._server.server_port}/"
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-cloudsql-api",
            daemon=True,
        ).start()
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if not self.violations:
            return
        if exc is not None:
            exc.add_note(self.report())
            return
        raise AssertionError(self.report())

    # setup and inspection for tests

    @property
    def project(self) -> str:
        return self.state.project

    @property
    def lock(self) -> threading.RLock:
        return self.state.lock

    def add_instance(self, name: str, **fields: Any) -> FakeInstance:
        with self.lock:
            made = FakeInstance(name, **fields)
            self.state.instances[name] = made
            return made

    def add_backup(self, instance: str, **fields: Any) -> FakeBackupRun:
        with self.lock:
            run = FakeBackupRun(str(next(self.state._ids)), instance, **fields)
            self.state.backups.append(run)
            return run

    def instance(self, name: str) -> FakeInstance | None:
        with self.lock:
            return self.state.instances.get(name)

    def operations(self) -> list[FakeOperation]:
        with self.lock:
            return list(self.state.operations.values())

    def finish_operations(self) -> None:
        with self.lock:
            for op in self.state.operations.values():
                op.finish()

    def fail_next_operation(
        self, message: str, code: str = "INTERNAL_ERROR", kind: str | None = None
    ) -> None:
        """The next operation started (of ``kind``, e.g. RESTORE_VOLUME, when given) ends
        DONE with an ``error`` and has no effect."""
        with self.lock:
            self.state.failing_operations.append((kind, code, message))

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        message: str,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status``, doing nothing."""
        fault = Fault(method.upper(), re.compile(path_regex), status, message, times, retry_after)
        with self.lock:
            self._faults.append(fault)

    def calls(self, *, mutating_only: bool = False) -> list[str]:
        """The API methods seen, in order (``instances.clone``, ...)."""
        with self.lock:
            return [
                r.api_method or f"{r.method} {r.path}"
                for r in self.requests
                if not mutating_only or r.method != "GET"
            ]

    def take_violations(self) -> list[Violation]:
        with self.lock:
            taken, self.violations = self.violations, []
            return taken

    def assert_no_violations(self) -> None:
        if self.violations:
            raise AssertionError(self.report())

    def report(self) -> str:
        lines = "\n".join(f"  {v}" for v in self.violations)
        return f"the fake Cloud SQL API saw {len(self.violations)} contract violation(s):\n{lines}"

    # HTTP

    def respond(self, http_method: str, target: str, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        record = RecordedRequest(http_method, parts.path, query, _parse(raw))
        with self.lock:
            self.requests.append(record)
            status, body, headers = self._answer(record)
            record.status = status
            self._check_response(record, body)
        return status, body, headers

    def _answer(self, record: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        method, values, why = self.contract.match(record.method, record.path.lstrip("/"))
        if method is None:
            self._violate("request", record, why)
            status = 404 if why.startswith("path not") else 405
            return status, ApiError(status, why).body(), {}
        record.api_method = method.short
        problems = self.contract.check_query(method, record.query)
        problems += self.contract.check_path_values(method, values)
        if method.request_ref:
            problems += self.contract.body_problems(method.request_ref, record.body, "body")
        elif record.body is not None:
            problems.append(f"{method.id} takes no body")
        if problems:
            self._violate("request", record, "; ".join(problems))
            return 400, ApiError(400, "Invalid request: " + "; ".join(problems)).body(), {}
        fault = self._take_fault(record)
        if fault is not None:
            wait = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            return fault.status, ApiError(fault.status, fault.message).body(), wait
        try:
            call = Call(method.short, values, record.query, record.body)
            return 200, self.state.handle(call), {}
        except ApiError as exc:
            return exc.status, exc.body(), {}
        except Exception:
            self._violate("error", record, traceback.format_exc(limit=4))
            return 500, ApiError(500, "internal error in the fake Cloud SQL API").body(), {}

    def _check_response(self, record: RecordedRequest, body: Any) -> None:
        if record.status >= 400:
            import jsonschema

            errors = list(jsonschema.Draft7Validator(ERROR_SCHEMA).iter_errors(body))
            problems = [e.message for e in errors]
        else:
            method, _, _ = self.contract.match(record.method, record.path.lstrip("/"))
            ref = method.response_ref if method else None
            problems = self.contract.body_problems(ref, body, "response") if ref else []
        if problems:
            self._violate("response", record, "; ".join(problems))

    def _take_fault(self, record: RecordedRequest) -> Fault | None:
        for fault in self._faults:
            if fault.method in ("*", record.method) and fault.pattern.search(record.path):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _violate(self, kind: str, record: RecordedRequest, detail: str) -> None:
        self.violations.append(Violation(kind, record.method, record.path, detail))


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
