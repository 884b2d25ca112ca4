"""Development reset: the runbook's "In Development -> Drop database, re-run from scratch".

Dropping a database is the most destructive thing rollbot does, so the tier is
checked before any connection is opened, and only ``development`` passes. The
database is re-created as it was (owner, encoding, collation and ctype, locale
provider, connection limit, per-database settings, database-level grants) so
the application reconnects to something identical but empty, then the caller's
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

ALLOWED_TIER = "development"
MAINTENANCE_DATABASES = ("postgres", "template1")


class ResetRefusedError(RollbotError):
    """A reset that must not happen (wrong tier, maintenance or template database)."""


@dataclass(frozen=True)
class DatabaseShape:
    """What ``CREATE DATABASE`` needs to bring the database back the same, minus its contents."""

    name: str
    owner: str
    encoding: str
    collate: str
    ctype: str
    locale_provider: str | None  # "icu" or "libc" (PostgreSQL 15+), None before
    icu_locale: str | None
    connection_limit: int
    settings: tuple[str, ...]  # "name=value" from ALTER DATABASE ... SET
    grants: tuple[tuple[str, str], ...]  # (grantee role or PUBLIC, privilege), owner's left out
    default_acl: bool  # datacl IS NULL: PUBLIC has CONNECT and TEMPORARY
    size_bytes: int
    other_connections: int


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
            f"CREATE DATABASE {s.name} OWNER {s.owner} ENCODING {s.encoding} "
            f"LC_COLLATE {s.collate} LC_CTYPE {s.ctype}"
            + (f" ICU_LOCALE {s.icu_locale}" if s.locale_provider == "icu" else "")
            + (f"; settings: {', '.join(s.settings)}" if s.settings else "")
            + (f"; grants: {len(s.grants)}" if s.grants else ""),
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
    major = server_major_version(conn)
    icu = "NULL"
    if major >= 17:
        icu = "d.datlocale"
    elif major >= 15:
        icu = "d.daticulocale"
    provider = "d.datlocprovider::text" if major >= 15 else "NULL"
    row = conn.execute(
        sql.SQL(
            "SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, "
            "d.datctype, {provider}, {icu}, d.datconnlimit, d.datistemplate, "
            "pg_database_size(d.oid), "
            "(SELECT count(*) FROM pg_stat_activity a WHERE a.datid = d.oid "
            " AND a.pid <> pg_backend_pid()), "
            "(SELECT s.setconfig FROM pg_db_role_setting s "
            " WHERE s.setdatabase = d.oid AND s.setrole = 0), "
            "d.datacl IS NULL "
            "FROM pg_database d WHERE d.datname = %s"
        ).format(provider=sql.SQL(provider), icu=sql.SQL(icu)),
        (name,),
    ).fetchone()
    if row is None:
        raise ProviderError(f"database {name!r} does not exist on this server")
    owner, encoding, collate, ctype, loc_provider, icu_locale, limit, is_template = row[:8]
    if is_template:
        raise ResetRefusedError(f"development reset refused: {name!r} is a template database")
    grants = conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
        "a.privilege_type FROM pg_database d, aclexplode(d.datacl) a "
        "WHERE d.datname = %s AND a.grantee <> d.datdba ORDER BY 1, 2",
        (name,),
    ).fetchall()
    return DatabaseShape(
        name=name,
        owner=owner,
        encoding=encoding,
        collate=collate,
        ctype=ctype,
        locale_provider={"i": "icu", "c": "libc"}.get(loc_provider or ""),
        icu_locale=icu_locale,
        connection_limit=int(limit),
        settings=tuple(row[10] or ()),
        grants=tuple((g, p) for g, p in grants),
        default_acl=bool(row[11]),
        size_bytes=int(row[8]),
        other_connections=int(row[9]),
    )


def plan_reset(url: str, tier: str) -> ResetPlan:
    """What a reset will do; refuses (without connecting) unless ``tier`` is development."""
    _refuse_unless_development(url, tier)
    with _maintenance_connection(url) as conn:
        shape = _read_shape(conn, dbname(url))
    return ResetPlan(target=describe(url), tier=tier, shape=shape)


def _create_statement(shape: DatabaseShape) -> sql.Composed:
    parts = [
        sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} ").format(
            sql.Identifier(shape.name), sql.Identifier(shape.owner), sql.Literal(shape.encoding)
        ),
        sql.SQL("LC_COLLATE {} LC_CTYPE {} CONNECTION LIMIT {}").format(
            sql.Literal(shape.collate),
            sql.Literal(shape.ctype),
            sql.Literal(shape.connection_limit),
        ),
    ]
    if shape.locale_provider == "icu" and shape.icu_locale:
        parts.append(
            sql.SQL(" LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(shape.icu_locale))
        )
    return sql.Composed(parts)


def _restore_properties(conn: psycopg.Connection, shape: DatabaseShape) -> None:
    db = sql.Identifier(shape.name)
    for setting in shape.settings:
        key, _, value = setting.partition("=")
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                db, sql.Identifier(key), sql.Literal(value)
            )
        )
    if not shape.default_acl:
        # PUBLIC's default CONNECT/TEMPORARY had been revoked on the original
        for privilege in ("CONNECT", "TEMPORARY"):
            if ("PUBLIC", privilege) not in shape.grants:
                conn.execute(
                    sql.SQL("REVOKE {} ON DATABASE {} FROM PUBLIC").format(sql.SQL(privilege), db)
                )
    for grantee, privilege in shape.grants:
        target = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        conn.execute(
            sql.SQL("GRANT {} ON DATABASE {} TO {}").format(sql.SQL(privilege), db, target)
        )


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
            conn.execute(_create_statement(shape))
            _restore_properties(conn, shape)
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
