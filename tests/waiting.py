"""Waiting on conditions, never on time: how a test lets something happen.

A fixed ``sleep`` bets that the machine is idle enough for the thing to have
happened; a busy CI runner (or two busy loops beside the suite) loses that bet.
Polling a predicate returns as soon as the condition holds, so a generous
deadline costs nothing when things go right and only bounds a real failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE_SECONDS = 60.0


def wait_until(
    predicate: Callable[[], T],
    what: str,
    *,
    timeout: float = DEADLINE_SECONDS,
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Fails with ``what`` in the message once ``timeout`` seconds pass without it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"still waiting after {timeout:g}s for {what}")
        time.sleep(interval)
