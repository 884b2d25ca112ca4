"""A local fake of PagerDuty over HTTPS, held to PagerDuty's own OpenAPI documents.

``PagerDutyApiServer()`` serves ``https://127.0.0.1:<port>`` from a background thread:
``POST /v2/enqueue`` (Events API v2, the spec's ``https://events.pagerduty.com/v2``) and
``GET /oncalls`` (REST API v2, ``https://api.pagerduty.com``), so one URL is both the
events and the REST base URL. HTTPS because the ``pagerduty`` client refuses any base URL
that is not ``https://``; the certificate is issued by a ``trustme`` CA whose bundle is
``ca_bundle`` (pass it as ``verify=`` or put it in ``$SSL_CERT_FILE``).

Every request is validated against the specs before it is handled (invalid: 400) and
every response before it is sent; problems are recorded in ``violations`` and leaving the
``with`` block raises when any were. Without the specs (``spec_available()`` false) the
fake serves the same answers unchecked and ``checked`` is False.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import ssl
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.pagerduty_api.contract import (
    EVENTS_PREFIX,
    UNDOCUMENTED_STATUS,
    RequestCheck,
    check_request,
    check_response,
    contract_for,
    spec_available,
)
from tests.pagerduty_api.events import Alert, Alerts, invalid_event
from tests.pagerduty_api.oncalls import OnCall, page, select

__all__ = ["Alert", "OnCall", "PagerDutyApiServer", "RecordedEvent", "Violation"]

EVENT_REASONS = {429: "throttle event"}


@dataclass
class RecordedEvent:
    body: Any  # the JSON body as sent (routing key included), or the raw text
    status: int = 0


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
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
    pattern: re.Pattern[str]
    status: int
    message: str
    retry_after: float | None
    times: int


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] | None = None


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        """The suite's output is for failures, not an access log."""


@functools.cache
def _authority() -> tuple[trustme.CA, trustme.LeafCert]:
    """One CA and server certificate per process (for 127.0.0.1 and localhost)."""
    ca = trustme.CA()
    return ca, ca.issue_cert("127.0.0.1", "localhost")


class PagerDutyApiServer:
    def __init__(self, *, api_token: str = "pd-test-api-token-0000") -> None:
        """``api_token``: what ``Authorization: Token token=<api_token>`` must carry."""
        self.api_token = api_token
        self.checked = spec_available()
        self.events: list[RecordedEvent] = []
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.unchecked: list[str] = []  # injected faults whose status the spec lists not
        self.on_call: list[OnCall] = []
        self.lock = threading.RLock()
        self._alerts = Alerts()
        self._faults: list[Fault] = []
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.url = ""
        self.ca_bundle = ""

    # lifecycle

    def start(self) -> PagerDutyApiServer:
        ca, leaf = _authority()
        self._dir = tempfile.TemporaryDirectory(prefix="fake-pagerduty-")
        self.ca_bundle = str(Path(self._dir.name) / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_bundle)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        self._server = make_server(
            "127.0.0.1",
            0,
            self._wsgi,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=context,
        )
        self.url = f"https://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # shutdown() waits one interval
            name="fake-pagerduty",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> PagerDutyApiServer:
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

    def client_context(self) -> ssl.SSLContext:
        """A client SSLContext trusting only the fake's CA."""
        return ssl.create_default_context(cafile=self.ca_bundle)

    @property
    def alerts(self) -> dict[tuple[str, str], Alert]:
        """The latest alert per (routing_key, dedup_key)."""
        with self.lock:
            return dict(self._alerts.current)

    @property
    def opened_alerts(self) -> list[Alert]:
        """Every alert ever opened (a trigger after a resolve opens another)."""
        with self.lock:
            return list(self._alerts.opened)

    def set_on_call(self, escalation_policy_id: str, people: Iterable[tuple[str, int]]) -> None:
        """Who ``GET /oncalls`` says is on call for the policy: (name, level) pairs."""
        with self.lock:
            self.on_call = [
                e for e in self.on_call if e.escalation_policy_id != escalation_policy_id
            ]
            self.on_call += [OnCall(name, level, escalation_policy_id) for name, level in people]

    def fail_next(
        self,
        path_regex: str,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose path matches with ``status``."""
        text = message or {400: "injected invalid event", 429: "Too many requests"}.get(
            status, "injected fault"
        )
        with self.lock:
            self._faults.append(Fault(re.compile(path_regex), status, text, retry_after, times))

    def take_violations(self) -> list[Violation]:
        """Return and forget the violations, for a test that provokes them on purpose."""
        with self.lock:
            taken, self.violations = self.violations, []
            return taken

    def _violation_report(self) -> str:
        lines = "\n".join(f"  {v}" for v in self.violations)
        return f"the fake PagerDuty saw {len(self.violations)} contract violation(s):\n{lines}"

    # HTTP

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self._respond(Request(environ))(environ, start_response)

    def _respond(self, request: Request) -> Response:
        record = RecordedRequest(request.method, request.path, request.args.to_dict(flat=False))
        event = self._record_event(request)
        check = check_request(contract_for(request.path), request) if self.checked else None
        fault = self._take_fault(request.path)
        reply = fault or self._answer(request, check)
        response = _to_response(reply)
        record.status = response.status_code
        if event is not None:
            event.status = response.status_code
        with self.lock:
            self.requests.append(record)
        if check is not None:
            try:
                self._check(request, response, check, injected=fault is not None)
            except Exception:  # a bug in the checks: fail the test, not the exchange
                self._violate("error", request, record.status, traceback.format_exc(limit=4))
        return response

    def _check(
        self, request: Request, response: Response, check: RequestCheck, injected: bool
    ) -> None:
        status = response.status_code
        if check.outcome in ("unknown_path", "unknown_method", "invalid"):
            self._violate("request", request, status, check.detail)
        if check.outcome in ("unknown_path", "unknown_method"):
            return
        problems = check_response(contract_for(request.path), request, response)
        if problems == [UNDOCUMENTED_STATUS] and injected:
            with self.lock:
                self.unchecked.append(f"{request.method} {request.path} -> {status}")
            return
        if problems == [UNDOCUMENTED_STATUS]:
            problems = [f"the spec lists no {status} response for {request.method} {request.path}"]
        for problem in problems:
            self._violate("response", request, status, problem)

    def _record_event(self, request: Request) -> RecordedEvent | None:
        if not request.path.startswith(EVENTS_PREFIX):
            return None
        event = RecordedEvent(_body(request))
        with self.lock:
            self.events.append(event)
        return event

    def _answer(self, request: Request, check: RequestCheck | None) -> Reply:
        events = request.path.startswith(EVENTS_PREFIX)
        outcome = check.outcome if check else "ok"
        if outcome == "unknown_path" or (request.path, events) not in (
            ("/v2/enqueue", True),
            ("/oncalls", False),
        ):
            return _error(events, 404, f"the fake PagerDuty does not serve {request.path}")
        if outcome == "unknown_method" or request.method != ("POST" if events else "GET"):
            return _error(events, 405, f"{request.method} is not allowed on {request.path}")
        if outcome == "invalid" and events:  # PagerDuty might take it; a fake should not
            return _error(True, 400, f"not as the spec says: {check.detail if check else ''}")
        try:
            with self.lock:
                return self._enqueue(request) if events else self._oncalls(request, outcome)
        except Exception:
            detail = traceback.format_exc(limit=4)
            self._violate("error", request, 500, detail)
            return _error(events, 500, "internal error in the fake PagerDuty")

    def _enqueue(self, request: Request) -> Reply:
        body = _body(request)
        errors = invalid_event(body)
        if errors:
            body = {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": errors,
            }
            return Reply(400, body)
        key = self._alerts.apply(body)
        return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": key})

    def _oncalls(self, request: Request, outcome: str) -> Reply:
        if outcome == "unauthenticated" or not self._authorized(request):
            return _error(False, 401, "Authentication failed")
        if outcome == "invalid":
            return _error(False, 400, "Invalid Input Provided")
        args = request.args
        try:
            limit, offset = int(args.get("limit", 25)), int(args.get("offset", 0))
        except ValueError:
            return _error(False, 400, "Invalid Input Provided")
        chosen = select(
            self.on_call,
            policy_ids=args.getlist("escalation_policy_ids[]"),
            user_ids=args.getlist("user_ids[]"),
            earliest=args.get("earliest") == "true",
        )
        return Reply(
            200, page(chosen, limit=limit, offset=offset, total=args.get("total") == "true")
        )

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("Authorization", "") == f"Token token={self.api_token}"

    def _take_fault(self, path: str) -> Reply | None:
        with self.lock:
            for fault in self._faults:
                if fault.pattern.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    reply = _error(path.startswith(EVENTS_PREFIX), fault.status, fault.message)
                    if fault.retry_after is not None:
                        reply.headers = {"Retry-After": f"{fault.retry_after:g}"}
                    return reply
        return None

    def _violate(self, kind: str, request: Request, status: int, detail: str) -> None:
        with self.lock:
            self.violations.append(Violation(kind, request.method, request.path, status, detail))


def _body(request: Request) -> Any:
    raw = request.get_data(as_text=True)
    if not raw:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(raw)
    return raw


def _error(events: bool, status: int, message: str) -> Reply:
    """An error in the API's own shape: Events ``{status, message, errors}``, REST
    ``{"error": {message}}``."""
    if events and status == 400:
        body = {
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": [message],
        }
        return Reply(status, body)
    if events:
        return Reply(status, {"status": EVENT_REASONS.get(status, "error"), "message": message})
    return Reply(status, {"error": {"message": message}})


def _to_response(reply: Reply) -> Response:
    return Response(
        json.dumps(reply.body) if reply.body is not None else b"",
        status=reply.status,
        headers=reply.headers or {},
        mimetype="application/json" if reply.body is not None else None,
    )
