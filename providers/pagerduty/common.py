"""What the ``pagerduty`` clients share here: TLS trust, short retries and plain errors.

The clients' own defaults suit a script, not a delivery loop: a 429 is retried without
limit and 503 six times with waits of 3, 6, 12 ... seconds, so one call could block the
outbox worker for minutes. Here a client retries once, briefly, and anything longer is
left to the outbox's backoff (``ProviderError.retryable``). Messages are one line,
redacted, and never carry a routing key or token (not even the client's last four).
"""

from __future__ import annotations

import ssl
from typing import Any, TypeVar

from pagerduty import ApiClient, Error, HttpError, UrlError

from bot.errors import ProviderError
from bot.redact import redact

RETRY_WAIT_SECONDS = 0.5  # the one retry's wait after a 429, a 5xx or a network error
TIMEOUT_SECONDS = 10.0  # per request; PagerDuty answers in well under a second
MAX_MESSAGE = 300
RETRIED_STATUSES = (429, 500, 502, 503, 504)

Client = TypeVar("Client", bound=ApiClient)


class PagerDutyError(ProviderError):
    """PagerDuty failed or refused. ``retryable``: whether trying again later may work;
    ``status``: the HTTP status (None without a response); ``retry_after``: seconds, when
    PagerDuty said so."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(one_line(message))
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


def one_line(text: str) -> str:
    """Redacted, whitespace collapsed, bounded: what a person reads in a thread."""
    flat = " ".join(redact(text).split())
    return flat if len(flat) <= MAX_MESSAGE else flat[: MAX_MESSAGE - 1] + "…"


def tls_verify(verify: str | bool | ssl.SSLContext) -> bool | ssl.SSLContext:
    """httpx2 deprecates ``verify=<path>``: a CA bundle path becomes an SSLContext.

    ``True`` keeps httpx2's default, which honours ``$SSL_CERT_FILE`` / ``$SSL_CERT_DIR``
    (not ``$REQUESTS_CA_BUNDLE``: the client is httpx2-based, not requests-based).
    """
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def build(
    cls: type[Client],
    secret: str,
    base_url: str | None,
    verify: str | bool | ssl.SSLContext,
    retry_wait: float | None = None,
) -> Client:
    """A client of ``cls`` with this module's retry policy; plain http is refused."""
    try:
        client = cls(secret, base_url=base_url, verify=tls_verify(verify))
    except UrlError:
        raise PagerDutyError(
            f"PagerDuty URL {base_url!r} refused: the client only speaks https://",
            retryable=False,
        ) from None
    except (OSError, ssl.SSLError) as exc:  # an unreadable CA bundle
        raise PagerDutyError(f"PagerDuty TLS setup failed: {exc}", retryable=False) from None
    return limit_retries(client, RETRY_WAIT_SECONDS if retry_wait is None else retry_wait)


def limit_retries(client: Client, wait: float) -> Client:
    """One retry after ``wait`` seconds for 429, 5xx and network errors, then give up."""
    client.retry = dict.fromkeys(RETRIED_STATUSES, 1)
    client.max_network_attempts = 1
    client.sleep_timer = wait / client.sleep_timer_base  # first wait = timer * base
    client.timeout = TIMEOUT_SECONDS
    return client


def error_from(exc: Error, doing: str) -> PagerDutyError:
    """A ``pagerduty`` exception as a one-line PagerDutyError; its own text is not used
    (a 401's names the key's last four characters)."""
    if isinstance(exc, HttpError) and exc.response is not None:
        return _http_error(exc, doing)
    cause = exc.__cause__
    reason = f"{type(cause).__name__}: {cause}" if cause is not None else type(exc).__name__
    return PagerDutyError(f"PagerDuty could not be reached for {doing}: {reason}", retryable=True)


def _http_error(exc: HttpError, doing: str) -> PagerDutyError:
    response = exc.response
    status = response.status_code
    if response.is_success:  # a 2xx whose body is not what the API documents
        return PagerDutyError(
            f"PagerDuty gave an unexpected answer to {doing} ({status})", retryable=True
        )
    retryable = status == 429 or status >= 500
    said = _said(response)
    what = "rate-limited" if status == 429 else "failed on" if status >= 500 else "refused"
    message = f"PagerDuty {what} {doing}: {status}{f' {said}' if said else ''}"
    return PagerDutyError(
        message, retryable=retryable, status=status, retry_after=_retry_after(response)
    )


def _said(response: Any) -> str:
    """PagerDuty's explanation: Events API ``{status, message, errors}``, REST API
    ``{"error": {message, errors}}``."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    parts = [str(inner.get("message") or inner.get("status") or "")]
    errors = inner.get("errors")
    if isinstance(errors, list):
        parts += [str(e) for e in errors if str(e) not in parts]
    return "; ".join(p for p in parts if p)


def _retry_after(response: Any) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
