"""One reading of the error rate after a rollback, from Prometheus or a JSON endpoint.

Prometheus: an instant query (``GET <prometheus_url>/api/v1/query?query=...``) whose
answer is a vector (its first series) or a scalar. A JSON endpoint: ``error_rate_url``
read at the dotted ``error_rate_field``. A reading that cannot be taken (unreachable, not
200, ``status: error``, no series, not a number) is a :class:`Reading` with an error that
says why in words, never an exception: the watch reports it and goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

from bot.config import ChecksConfig
from bot.redact import redact


class ReadingError(Exception):
    """Why no value could be read (said to people as it is)."""


@dataclass(frozen=True)
class Reading:
    """An error rate read now, or why it could not be."""

    source: str
    threshold: float
    value: float | None = None
    error: str | None = None

    @property
    def breached(self) -> bool:
        return self.value is not None and self.value > self.threshold

    @property
    def ok(self) -> bool:
        return self.value is not None and not self.breached

    def line(self) -> str:
        if self.value is None:
            return redact(f"error rate unknown: {self.error} ({self.source})")
        verdict = "ABOVE" if self.breached else "under"
        return redact(
            f"error rate {self.value:.4g} ({verdict} the threshold {self.threshold:g}) "
            f"from {self.source}"
        )

    def as_data(self) -> dict[str, Any]:
        value = self.value if self.value is None or math.isfinite(self.value) else str(self.value)
        return {
            "source": redact(self.source),
            "value": value,
            "threshold": self.threshold,
            "breached": self.breached,
            "error": redact(self.error) if self.error else None,
        }


def describe_source(checks: ChecksConfig) -> str:
    """Where the error rate is read, in words (for the plan and each reading)."""
    if checks.error_rate_query:
        return f"Prometheus {checks.prometheus_url} query `{checks.error_rate_query}`"
    return f"{checks.error_rate_url} field {checks.error_rate_field}"


def read_error_rate(checks: ChecksConfig, *, client: httpx.Client | None = None) -> Reading:
    """Take one reading with the environment's configured source."""
    source = describe_source(checks)
    try:
        value = _read(checks, client)
    except ReadingError as exc:
        return Reading(source, checks.error_rate_threshold, error=str(exc))
    return Reading(source, checks.error_rate_threshold, value=value)


def _read(checks: ChecksConfig, client: httpx.Client | None) -> float:
    if checks.error_rate_query and checks.prometheus_url:
        url = checks.prometheus_url.rstrip("/") + "/api/v1/query"
        body = _get_json(url, {"query": checks.error_rate_query}, checks.timeout_seconds, client)
        return prometheus_value(body)
    if checks.error_rate_url:
        body = _get_json(checks.error_rate_url, None, checks.timeout_seconds, client)
        return field_value(body, checks.error_rate_field)
    raise ReadingError("no error-rate source is configured")


def _get_json(
    url: str, params: dict[str, str] | None, timeout: float, client: httpx.Client | None
) -> Any:
    try:
        if client is None:
            with httpx.Client() as own:
                response = own.get(url, params=params, timeout=timeout)
        else:
            response = client.get(url, params=params, timeout=timeout)
    except httpx.TimeoutException:
        raise ReadingError(f"{url} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise ReadingError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        said = _prometheus_error(body) or " ".join(response.text.split())[:120]
        raise ReadingError(f"{url} answered {response.status_code}" + (f": {said}" if said else ""))
    if body is None:
        raise ReadingError(f"{url} answered 200 but not with JSON")
    return body


def _prometheus_error(body: Any) -> str | None:
    if isinstance(body, dict) and body.get("status") == "error":
        return f"{body.get('errorType') or 'error'}: {body.get('error') or 'no message'}"
    return None


def prometheus_value(body: Any) -> float:
    """The value of an instant query's answer: a vector's first series, or a scalar."""
    error = _prometheus_error(body)
    if error:
        raise ReadingError(f"Prometheus refused the query: {error}")
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ReadingError("Prometheus answered without status success")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _number(result[1], "the scalar")
    if kind != "vector":
        raise ReadingError(f"the query returned a {kind or 'missing'} result; it needs a vector")
    if not result:
        raise ReadingError(
            "the query returned no series (a wrong metric name, or no samples in its window)"
        )
    sample = result[0].get("value") if isinstance(result[0], dict) else None
    if not isinstance(sample, list) or len(sample) != 2:
        raise ReadingError("the query's first series has no [time, value] sample")
    return _number(sample[1], "the first series")


def field_value(body: Any, dotted: str) -> float:
    """``body`` at ``dotted`` (``data.errors.rate``; a digit indexes a list)."""
    here = body
    for part in dotted.split("."):
        if isinstance(here, dict) and part in here:
            here = here[part]
        elif isinstance(here, list) and part.isdigit() and int(part) < len(here):
            here = here[int(part)]
        else:
            raise ReadingError(f"the answer has no field {dotted!r} (missing at {part!r})")
    return _number(here, f"field {dotted!r}")


def _number(raw: Any, what: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ReadingError(f"{what} is not a number: {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise ReadingError(f"{what} is not a number: {raw!r}") from None
    if math.isnan(value):
        raise ReadingError(f"{what} is NaN (no requests in the window, or a division by zero)")
    return value
