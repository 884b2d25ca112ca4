"""Connections with errors a person can act on.

psycopg's own messages can include the connection string; here every failure
becomes a :class:`ProviderError` naming host and database, never the password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg

from bot.config import EnvironmentConfig
from bot.errors import ProviderError, RollbotError
from bot.redact import redact, register_secret

if TYPE_CHECKING:
    from bot.steps import StepContext


def describe(url: str) -> str:
    """``user@host:port/db`` for messages (no password)."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{user}{parts.hostname or 'localhost'}{port}{parts.path or '/'}"


def describe_environment(env: EnvironmentConfig) -> str:
    """``name (tier): user@host:port/db`` for plans, even where the URL's env var is unset."""
    try:
        where = describe(env.database_url())
    except RollbotError:
        where = f"${env.database_url_env} (not set here)"
    return f"{env.name} ({env.tier}): {where}"


def dbname(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def with_dbname(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return parts._replace(path="/" + name).geturl()


def _reason(exc: psycopg.Error) -> str:
    text = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "password authentication failed" in text:
        return "password authentication failed"
    if re.search(r"Connection refused|could not connect|timeout expired|No route", text):
        return "server unreachable (" + text + ")"
    return text


def connect(url: str, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection:
    """Open a connection or raise a clear :class:`ProviderError`."""
    parts = urlsplit(url)
    register_secret(parts.password)
    kwargs.setdefault("connect_timeout", 10)
    kwargs.setdefault("application_name", "rollbot")
    try:
        return psycopg.connect(url, autocommit=autocommit, **kwargs)
    except psycopg.Error as exc:
        raise ProviderError(f"cannot connect to {describe(url)}: {_reason(exc)}") from None


@contextmanager
def plan_connection(ctx: StepContext) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the step's target for reading its plan; while a card
    previews several methods, the one connection they all read through.

    A restore swapping the target ends every session on it, this one too: a plan read
    cut short that way is a :class:`ProviderError` (the card shows that method as
    unavailable for now), never an exception that fails the whole card.
    """
    url = ctx.environment.database_url()
    with ctx.opened(("postgres", url), lambda: connect(url, autocommit=True)) as conn:
        try:
            yield conn
        except psycopg.OperationalError as exc:
            raise ProviderError(
                f"lost the connection to {describe(url)} while reading the plan "
                f"({_reason(exc)}); is a restore replacing it? Try again once it is done"
            ) from None


def server_major_version(conn: psycopg.Connection) -> int:
    return int(conn.info.server_version) // 10000
