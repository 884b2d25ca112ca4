"""When a Cloud SQL Admin API request is tried again, and what a failure says.

429 (quota) and 503 (unavailable) mean Google did not act: retried for every method. 500,
502, 504 and a lost connection may hide a change that happened, so only reads are retried
on them; a refused connection never reached Google and is retried too. Waits grow
exponentially with jitter (``Retry-After`` wins when sent), all within ``max_wait_seconds``
(the same budget rule as ``providers.neon.retrying``). The rest becomes one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httplib2
import tenacity
from googleapiclient.errors import HttpError

from bot.redact import redact
from providers.cloudsql.models import CloudSqlError
from providers.neon.retrying import BACKOFF_FIRST, BACKOFF_MAX, JITTER

log = logging.getLogger(__name__)

ALWAYS_RETRIED = frozenset({429, 503})
GET_RETRIED = frozenset({500, 502, 504})
TRANSPORT_ERRORS = (OSError, httplib2.HttpLib2Error)


def status_of(exc: BaseException) -> int | None:
    return int(exc.resp.status) if isinstance(exc, HttpError) else None


def is_retryable(method: str, exc: BaseException) -> bool:
    status = status_of(exc)
    if status is not None:
        return status in ALWAYS_RETRIED or (method == "GET" and status in GET_RETRIED)
    if isinstance(exc, ConnectionRefusedError):
        return True  # nothing reached the API
    return method == "GET" and isinstance(exc, TRANSPORT_ERRORS)


def _retry_after(exc: BaseException) -> float | None:
    if not isinstance(exc, HttpError):
        return None
    try:
        return max(0.0, float(exc.resp.get("retry-after", "")))
    except ValueError:
        return None


class _Backoff(tenacity.wait.wait_base):
    def __init__(self) -> None:
        self._exponential = tenacity.wait_exponential_jitter(
            multiplier=BACKOFF_FIRST, max=BACKOFF_MAX, jitter=JITTER
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        asked = _retry_after(outcome.exception()) if outcome is not None else None
        return asked if asked is not None else self._exponential(retry_state)


class _Budget(tenacity.stop.stop_base):
    """Stop before the next wait would pass ``max_wait_seconds`` (slept or on the clock)."""

    def __init__(self, max_wait_seconds: float) -> None:
        self.max_wait_seconds = max_wait_seconds

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        spent = max(retry_state.idle_for, retry_state.seconds_since_start or 0.0)
        return spent + retry_state.upcoming_sleep > self.max_wait_seconds


def retrying(
    method: str, name: str, *, max_wait_seconds: float, sleep: Callable[[float], None]
) -> tenacity.Retrying:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        why = f"HTTP {status_of(exc)}" if status_of(exc) else type(exc).__name__
        log.info("Cloud SQL %s: %s, again in %.1f s", name, why, state.upcoming_sleep)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: is_retryable(method, exc)),
        wait=_Backoff(),
        stop=_Budget(max_wait_seconds),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def google_message(exc: HttpError) -> str:
    """Google's own ``error.message`` (what the console would say), else the reason."""
    reason = exc.reason if isinstance(exc.reason, str) and exc.reason else ""
    return reason.strip() or exc.resp.reason or "no message"


def http_error(exc: HttpError, method: str, name: str, project: str) -> CloudSqlError:
    status = int(exc.resp.status)
    text = google_message(exc)
    if status in (401, 403):
        return CloudSqlError(
            f"Cloud SQL Admin API refused the credentials (HTTP {status}: {text}); the account "
            f"needs the Cloud SQL Admin role on project {project}",
            status=status,
        )
    retried = (status in ALWAYS_RETRIED or (method == "GET" and status in GET_RETRIED)) and (
        "; still failing after retries, try again later"
    )
    return CloudSqlError(
        f"Cloud SQL Admin API: {text} (HTTP {status}, {name}){retried or ''}", status=status
    )


def transport_error(exc: BaseException, method: str, name: str) -> CloudSqlError:
    reason = redact(str(exc) or type(exc).__name__)
    if method == "GET" or isinstance(exc, ConnectionRefusedError):
        return CloudSqlError(f"Cloud SQL Admin API unreachable: {reason} ({name})")
    return CloudSqlError(
        f"Cloud SQL Admin API unreachable: {reason} ({name}); the change may or may not have "
        "been made, check the Cloud SQL console before trying again"
    )
