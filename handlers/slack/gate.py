"""The front door for Slack's HTTP requests: size, signature, shape, then the router.

Slack signs each request (``v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}")``).
rollbot checks that itself, first, and strictly: a missing or non-numeric
timestamp, one more than five minutes off, or a wrong signature is a 401,
never an exception; a body over :data:`MAX_BODY` is a 413 before it is read;
a verified body of the wrong shape (``handlers.slack.payloads``) is a 400.
Nothing refused here reaches a handler, is logged in full, or makes rollbot
post anywhere. A validated payload goes straight to the acknowledging side's
router (``handlers.slack.acks``), whose answer is the response. Refusals are counted per source per minute (:class:`DoorRefusals`).
Every Slack request is timed here, from arrival to answer, by payload kind
(``handlers.metrics``): the ack latency Slack holds rollbot to (3 s).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.store import Store
from handlers.metrics import observe_request
from handlers.slack.acks import Reply
from handlers.slack.payloads import (
    BadPayload,
    BlockActions,
    HomeCallback,
    Ignored,
    MentionCallback,
    SlashCommand,
    UrlVerification,
    ViewSubmission,
    classify,
    parse_body,
)

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]
MAX_BODY = 512 * 1024
MAX_DISCARD = 16 * 1024 * 1024  # beyond this a refused body is not even read
MAX_SKEW_SECONDS = 300
_DIGITS = re.compile(r"^\d{1,12}$")
_SIGNATURE = re.compile(r"^v0=[0-9a-f]{64}$")


def signature_problem(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """Why Slack's signature does not hold, or None when it does."""
    if not timestamp or not _DIGITS.match(timestamp):
        return "missing or non-numeric timestamp"
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        return "timestamp more than five minutes off"
    if not signature or not _SIGNATURE.match(signature):
        return "missing or malformed signature"
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return "signature does not match"
    return None


@dataclass
class _Minute:
    count: int = 0
    stored: int = 0
    reason: str = ""


class DoorRefusals:
    """Refused requests, one row per source per minute (an audit event the first time).

    Counting happens in memory on the request path; a background flush writes the
    counts, so a flood of forged requests costs no database write each, and the
    audit trail grows by at most one event per source per minute.
    """

    MAX_SOURCES = 200  # per minute; beyond that every new source counts as "other"

    def __init__(self, store: Store, audit: Callable[[str, str], None], flush_seconds: float = 2.0):
        self.store = store
        self.audit = audit
        self.flush_seconds = flush_seconds
        self._minutes: dict[tuple[str, datetime], _Minute] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def record(self, source: str, reason: str) -> None:
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        with self._lock:
            key = (source[:64], minute)
            if key not in self._minutes:
                distinct = sum(1 for s, m in self._minutes if m == minute)
                key = key if distinct < self.MAX_SOURCES else ("other", minute)
            slot = self._minutes.setdefault(key, _Minute(reason=reason))
            slot.count += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="door-refusals", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            try:
                self.flush()
            except Exception as exc:  # the state database may be down: keep counting
                log.warning("could not store refused-request counts: %s", type(exc).__name__)

    def flush(self) -> None:
        from bot.models import RefusedRequestCount

        now = datetime.now(UTC).replace(second=0, microsecond=0)
        with self._lock:
            pending = {k: (v.count, v.stored, v.reason) for k, v in self._minutes.items()}
        for (source, minute), (count, stored, reason) in pending.items():
            if count != stored:
                with self.store.session() as session:
                    row = session.get(RefusedRequestCount, (source, minute))
                    if row is None:
                        session.add(
                            RefusedRequestCount(
                                source=source, minute=minute, reason=reason, count=count
                            )
                        )
                    else:
                        row.count = count
                if stored == 0:
                    self.audit(
                        source,
                        f"Refused Slack request(s) from {source}: {reason} "
                        "(counted per minute in refused_request_counts)",
                    )
            with self._lock:
                slot = self._minutes.get((source, minute))
                if slot is not None:
                    slot.stored = count
                    if minute < now and slot.count == count:
                        del self._minutes[(source, minute)]


def _discard(stream: Any, length: int) -> None:
    """Read (and drop) a refused body up to :data:`MAX_DISCARD`, so the client sees the 413."""
    left = min(length, MAX_DISCARD)
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            return
        left -= len(chunk)


Probe = Callable[[], tuple[int, str, bytes]]
STATUS_TEXT = {200: "200 OK", 503: "503 Service Unavailable"}
KINDS: dict[type, str] = {
    SlashCommand: "slash_command",
    BlockActions: "block_actions",
    ViewSubmission: "view_submission",
    MentionCallback: "app_mention",
    HomeCallback: "app_home_opened",
    UrlVerification: "url_verification",
    Ignored: "ignored",
}


def _reply(
    start_response: StartResponse, status: str, body: dict[str, Any] | None = None
) -> Iterable[bytes]:
    data = json.dumps(body or {}).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _probe(start_response: StartResponse, probe: Probe) -> Iterable[bytes]:
    code, content_type, data = probe()
    start_response(
        STATUS_TEXT.get(code, f"{code} Status"),
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [data]


class _Seen:
    """What the metrics need to know about one request: its kind and the status sent."""

    def __init__(self, start_response: StartResponse) -> None:
        self.kind = "other"
        self.status = 0
        self._start_response = start_response

    def start_response(self, status: str, headers: Any, *exc_info: Any) -> Any:
        self.status = int(status.split(" ", 1)[0]) if status[:3].isdigit() else 0
        return self._start_response(status, headers, *exc_info)


def front_door(
    dispatch: Callable[[object], Reply],
    signing_secret: str,
    refusals: DoorRefusals | None,
    *,
    path: str = "/slack/events",
    probes: dict[str, Probe] | None = None,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """WSGI: ``/healthz`` and the GET ``probes`` (``/readyz``, ``/metrics``); ``path``
    checked (size, signature, shape), then answered by ``dispatch`` (a validated payload
    in, the ack's body out); timed as a whole by kind."""
    probes = probes or {}

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        where = environ.get("PATH_INFO")
        if where == "/healthz":
            return _reply(start_response, "200 OK", {"ok": True})
        if where in probes and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return _probe(start_response, probes[where])
        started = time.perf_counter()
        seen = _Seen(start_response)
        try:
            return slack_request(environ, seen)
        finally:
            observe_request(seen.kind, seen.status, time.perf_counter() - started)

    def slack_request(environ: dict[str, Any], seen: _Seen) -> Iterable[bytes]:
        start_response = seen.start_response
        if environ.get("PATH_INFO") != path or environ.get("REQUEST_METHOD") != "POST":
            return _reply(start_response, "404 Not Found", {"error": "not found"})
        seen.kind = "refused"
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            _discard(environ["wsgi.input"], length)
            return _reply(start_response, "413 Request Entity Too Large", {"error": "too large"})
        raw = environ["wsgi.input"].read(length) if length else b""
        problem = signature_problem(
            signing_secret,
            environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP"),
            environ.get("HTTP_X_SLACK_SIGNATURE"),
            raw,
            time.time(),
        )
        if problem:
            if refusals is not None:
                refusals.record(str(environ.get("REMOTE_ADDR") or "unknown"), problem)
            return _reply(start_response, "401 Unauthorized", {"error": "invalid request"})
        seen.kind = "malformed"
        try:
            payload = classify(parse_body(environ.get("CONTENT_TYPE") or "", raw))
        except BadPayload as exc:
            log.info("refused a signed Slack request of the wrong shape: %s", exc)
            return _reply(start_response, "400 Bad Request", {"error": "unexpected payload"})
        seen.kind = KINDS.get(type(payload), "other")
        reply = None if isinstance(payload, Ignored) else dispatch(payload)
        if reply is None:
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        return _reply(start_response, "200 OK", reply)

    return application
