"""When a Neon API request is tried again, how long rollbot waits, and what a failure says.

The spec's GeneralError says: 503 and 423 (another operation holds the project)
are always safe to retry; a network error or timeout is safe to retry only for
GET, since a POST or DELETE may have taken effect with the answer lost. 429 is
rate limiting: Neon did nothing, and ``Retry-After`` says how long to back off.
Waits grow exponentially with jitter (so several bots do not retry in step), and
all of them together stay within ``max_wait_seconds``. What is left after that
becomes one :class:`NeonError` line naming the request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import tenacity

from bot.redact import redact
from providers.neon.models import NeonError

log = logging.getLogger(__name__)

# Retried for every method: Neon did not act on the request.
ALWAYS_RETRIED = frozenset({423, 429, 503})
# Retried for GET only: a mutation may have happened behind these.
GET_RETRIED = frozenset({500, 502, 504})

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
JITTER = 1.0
KEY_REJECTED = (
    "Neon API key rejected (HTTP {status}): check the key in the environment variable "
    "the config names"
)


class RetryableStatus(Exception):
    """A response worth trying again; carries it so the last one can be reported."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def is_retryable_status(method: str, status: int) -> bool:
    return status in ALWAYS_RETRIED or (method == "GET" and status in GET_RETRIED)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (a number or an HTTP date), or None when absent or unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _should_retry(method: str) -> Callable[[BaseException], bool]:
    def check(exc: BaseException) -> bool:
        if isinstance(exc, RetryableStatus):
            return True
        return method == "GET" and isinstance(exc, httpx.TransportError)

    return check


class _Backoff(tenacity.wait.wait_base):
    """Exponential with jitter, unless the server said how long (``Retry-After``)."""

    def __init__(self) -> None:
        self._exponential = tenacity.wait_exponential_jitter(
            multiplier=BACKOFF_FIRST, max=BACKOFF_MAX, jitter=JITTER
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RetryableStatus):
            asked = retry_after_seconds(exc.response)
            if asked is not None:
                return asked
        return self._exponential(retry_state)


class _Budget(tenacity.stop.stop_base):
    """Stop before the next wait would take the total past ``max_wait_seconds``.

    Counts both the time slept (what an injected sleep reports) and the clock, so the
    budget holds with a fake sleep in tests and with slow responses in production.
    """

    def __init__(self, max_wait_seconds: float) -> None:
        self.max_wait_seconds = max_wait_seconds

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        spent = max(retry_state.idle_for, retry_state.seconds_since_start or 0.0)
        return spent + retry_state.upcoming_sleep > self.max_wait_seconds


def _log_retry(method: str, path: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        why = (
            f"HTTP {exc.response.status_code}"
            if isinstance(exc, RetryableStatus)
            else type(exc).__name__
        )
        log.info(
            "Neon API %s %s: %s, try %d again in %.1f s",
            method,
            path,
            why,
            retry_state.attempt_number + 1,
            retry_state.upcoming_sleep,
        )

    return before_sleep


def retrying(
    method: str, path: str, *, max_wait_seconds: float, sleep: Callable[[float], None]
) -> tenacity.Retrying:
    """The retry loop for one request; raises the last failure once the budget is spent."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_should_retry(method)),
        wait=_Backoff(),
        stop=_Budget(max_wait_seconds),
        sleep=sleep,
        before_sleep=_log_retry(method, path),
        reraise=True,
    )


def _error_message(response: httpx.Response) -> str:
    """The spec's GeneralError ``message``, else the body's first line, else the reason."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    text = response.text.strip().splitlines()
    if text and not text[0].lstrip().startswith("<"):
        return text[0][:200]
    return response.reason_phrase or "no message"


def status_error(
    response: httpx.Response, method: str, path: str, *, gave_up: bool = False
) -> NeonError:
    """The one-line NeonError for an answer rollbot will not (or no longer) retry."""
    status = response.status_code
    retryable = is_retryable_status(method, status)
    if status in (401, 403):
        return NeonError(KEY_REJECTED.format(status=status), status=status)
    message = f"Neon API: {_error_message(response)} (HTTP {status}, {method} {path})"
    if gave_up:
        message += "; still failing after retries, try again later"
    return NeonError(message, status=status, retryable=retryable)


def transport_error(exc: httpx.TransportError, method: str, path: str) -> NeonError:
    """No answer: for a mutation, say that its outcome is unknown."""
    reason = redact(str(exc) or type(exc).__name__)
    if method == "GET":
        return NeonError(f"Neon API unreachable: {reason} ({method} {path})", retryable=True)
    return NeonError(
        f"Neon API unreachable: {reason} ({method} {path}); the change may or may not have "
        "been made, check the Neon console before trying again"
    )
