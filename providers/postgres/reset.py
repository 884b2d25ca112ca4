"""Development reset: the runbook's "In Development -> Drop database, re-run from scratch".

Dropping a database is the most destructive thing rollbot does, so the tier is
checked before any connection is opened, and only ``development`` passes. The
database is re-created as it was (owner, encoding, collation and ctype, locale
provider, connection limit, tablespace, settings, access and comment: see
``providers/postgres/database.py``, which restores share) so the application reconnects to something identical but empty, then the caller's
``migrate`` callable (the team's migrate command, or the built-in drizzle
applier) rebuilds the schema. ``DROP DATABASE`` runs from the maintenance
database because nobody can drop the database they are connected to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from bot.errors import ProviderError, RollbotError
from bot.redact import redact
from providers.postgres.conn import connect, dbname, describe, server_major_version, with_dbname
from providers.postgres.database import DatabaseShape, apply_access, create_like, read_shape

ALLOWED_TIER = "development"
MAINTENANCE_DATABASES = ("postgres", "template1")


class ResetRefusedError(RollbotError):
    """A reset that must not happen (wrong tier, maintenance or template database)."""


@dataclass(frozen=True)
class ResetPlan:
    target: str
    tier: str
    shape: DatabaseShape

    def lines(self) -> list[str]:
        s = self.shape
        return [
            f"development reset of {self.target}",
            f"DROP DATABASE {s.name} WITH (FORCE): ALL its data is lost "
            f"({s.size_bytes / 1e6:.1f} MB); {s.other_connections} other connection(s) "
            "will be disconnected",
            f"CREATE DATABASE {s.name} as it is now: {s.summary()}",
            "then re-run the migrations",
        ]

    def __str__(self) -> str:
        return redact("\n".join(self.lines()))


@dataclass
class ResetResult:
    database: str
    seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())
        return [f"{self.database} dropped, re-created and migrated ({phases})"]


def _refuse_unless_development(url: str, tier: str) -> None:
    if tier != ALLOWED_TIER:
        raise ResetRefusedError(
            f"development reset refused for {describe(url)}: its tier is {tier!r}; dropping the "
            "database is only allowed on development (use forward-fix or a restore instead)"
        )
    if dbname(url) in (*MAINTENANCE_DATABASES, "template0"):
        raise ResetRefusedError(
            f"development reset refused: {dbname(url)!r} is a maintenance database"
        )


def _maintenance_connection(url: str) -> psycopg.Connection:
    """A connection to ``postgres`` (or ``template1``) on the same server, in autocommit."""
    first_error: ProviderError | None = None
    for name in MAINTENANCE_DATABASES:
        try:
            return connect(with_dbname(url, name), autocommit=True)
        except ProviderError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _read_shape(conn: psycopg.Connection, name: str) -> DatabaseShape:
    shape = read_shape(conn, name)
    if shape.is_template:
        raise ResetRefusedError(f"development reset refused: {name!r} is a template database")
    return shape


def plan_reset(url: str, tier: str) -> ResetPlan:
    """What a reset will do; refuses (without connecting) unless ``tier`` is development."""
    _refuse_unless_development(url, tier)
    with _maintenance_connection(url) as conn:
        shape = _read_shape(conn, dbname(url))
    return ResetPlan(target=describe(url), tier=tier, shape=shape)


def reset_database(url: str, tier: str, migrate: Callable[[str], None]) -> ResetResult:
    """Drop and re-create the database at ``url``, then ``migrate(url)``.

    Refused with :class:`ResetRefusedError`, nothing touched, unless ``tier`` is
    ``development``. A failing ``migrate`` leaves the database empty and raises
    a :class:`ProviderError` saying so.
    """
    _refuse_unless_development(url, tier)
    result = ResetResult(database=describe(url))
    started = time.monotonic()
    with _maintenance_connection(url) as conn:
        shape = _read_shape(conn, dbname(url))
        ident = sql.Identifier(shape.name)
        try:
            if server_major_version(conn) >= 13:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident))
            else:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (shape.name,),
                )
                conn.execute(sql.SQL("DROP DATABASE {}").format(ident))
        except psycopg.Error as exc:
            raise ProviderError(
                f"DROP DATABASE {shape.name} failed on {describe(url)}: {_first_line(exc)}"
            ) from None
        result.seconds["drop"] = time.monotonic() - started
        started = time.monotonic()
        try:
            create_like(conn, shape, shape.name)
            apply_access(conn, shape, shape.name)
        except psycopg.Error as exc:
            raise ProviderError(
                f"database {shape.name} was dropped but CREATE DATABASE failed: {_first_line(exc)}"
            ) from None
        result.seconds["create"] = time.monotonic() - started
    started = time.monotonic()
    try:
        migrate(url)
    except RollbotError as exc:
        raise ProviderError(
            f"database {shape.name} was re-created empty but the migrations failed: {redact(exc)}"
        ) from None
    except Exception as exc:
        raise ProviderError(
            f"database {shape.name} was re-created empty but the migrations failed: "
            f"{_first_line(exc)}"
        ) from None
    result.seconds["migrate"] = time.monotonic() - started
    return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0]) if text else type(exc).__name__
