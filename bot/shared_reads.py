"""What the plans of one card render read once.

A card previews every method it offers, and each preview used to read the target itself:
a new connection, the same size, role and migration queries, once per method. Within one
render the answers cannot usefully differ, so the previews share them (and the failures:
a refusal read once is a refusal for every preview that asks again).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, ExitStack
from typing import Any, TypeVar

from bot.errors import RollbotError

T = TypeVar("T")


class SharedReads:
    """Values and open resources shared by the previews of one render, closed with it."""

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._failures: dict[Hashable, RollbotError] = {}
        self._stack = ExitStack()

    def value(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` the first time ``key`` is asked for, the same value (or refusal) after."""
        if key in self._failures:
            raise self._failures[key]
        if key not in self._values:
            try:
                self._values[key] = compute()
            except RollbotError as exc:
                self._failures[key] = exc
                raise
        return self._values[key]

    def resource(self, key: Hashable, open_: Callable[[], AbstractContextManager[T]]) -> T:
        """A resource opened once (e.g. a connection to the target), closed by :meth:`close`."""
        return self.value(("resource", key), lambda: self._stack.enter_context(open_()))

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> SharedReads:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
