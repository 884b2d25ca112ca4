"""The request a core command is handling: its idempotency key, when it was accepted, via what.

An adapter sets it around one person's request (an inbox row, a CLI command)
with :func:`handling`; the core reads it in one place (``Rollbot._attempt``):

- ``key`` makes the command exactly-once: the key is stored in the same
  transaction as the change, so a re-claimed inbox row or a retried request
  acts once and reports :class:`~bot.errors.DuplicateRequestError`;
- ``accepted_at`` is the time decisions use (approval expiry): a Run clicked
  while its approvals were valid is not refused because the queue was slow.
  The adapter refuses requests older than :data:`MAX_WAIT`, so that bound holds;
- ``via`` is recorded with every audit event (e.g. the OS user behind a CLI command).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_WAIT = timedelta(minutes=10)


@dataclass(frozen=True)
class RequestContext:
    key: str | None = None
    accepted_at: datetime | None = None
    via: str = ""


_current: ContextVar[RequestContext | None] = ContextVar("rollbot_request", default=None)


@contextmanager
def handling(request: RequestContext) -> Iterator[RequestContext]:
    """Within this block (this thread only), core commands act for ``request``."""
    token = _current.set(request)
    try:
        yield request
    finally:
        _current.reset(token)


def current_request() -> RequestContext | None:
    return _current.get()


def decision_time(now: datetime) -> datetime:
    """The accepted time of the current request when it is recent enough, else ``now``."""
    request = current_request()
    if request and request.accepted_at and now - request.accepted_at <= MAX_WAIT:
        return min(request.accepted_at, now)
    return now
