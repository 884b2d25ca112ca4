"""A database object's own shape: read it, and create another database the same.

A dump holds what is *in* a database, not the database object itself: its owner,
locale, connection limit, tablespace, who may connect (``datacl``), its comment and
its ``ALTER DATABASE / ALTER ROLE ... IN DATABASE ... SET`` settings. A restore that
creates a new database and a development reset that re-creates one both bring all of
that back from here, so the two cannot drift apart.

Access (``datacl``, ``ALLOW_CONNECTIONS``, ``IS_TEMPLATE``) is applied separately and
last (:func:`apply_access`): a restore loads the new database first and must be able
to connect to it while it does.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from bot.errors import ProviderError
from providers.postgres.conn import server_major_version


@dataclass(frozen=True)
class Grant:
    """One entry of ``datacl``: ``grantor`` gave ``privilege`` to ``grantee`` (or PUBLIC)."""

    grantor: str
    grantee: str  # a role name, or "PUBLIC"
    privilege: str  # CONNECT, CREATE, TEMPORARY
    grantable: bool


@dataclass(frozen=True)
class DatabaseShape:
    """What ``CREATE DATABASE`` and the statements after it need to bring a database back."""

    name: str
    owner: str
    encoding: str
    collate: str
    ctype: str
    locale_provider: str | None  # "icu" or "libc" (PostgreSQL 15+), None before
    icu_locale: str | None
    connection_limit: int
    tablespace: str
    allow_connections: bool
    is_template: bool
    settings: tuple[str, ...]  # "name=value" from ALTER DATABASE ... SET
    role_settings: tuple[tuple[str, str], ...]  # (role, "name=value"): ALTER ROLE ... IN DATABASE
    acl: str | None  # datacl as text; None = the default (PUBLIC may CONNECT and TEMPORARY)
    grants: tuple[Grant, ...]  # datacl exploded, in order
    comment: str | None
    size_bytes: int
    other_connections: int

    @property
    def default_acl(self) -> bool:
        return self.acl is None

    def summary(self) -> str:
        """One line for plans: what comes back besides the contents."""
        parts = [f"owner {self.owner}", f"encoding {self.encoding}", f"collation {self.collate}"]
        if self.locale_provider == "icu" and self.icu_locale:
            parts.append(f"ICU locale {self.icu_locale}")
        if self.connection_limit >= 0:
            parts.append(f"connection limit {self.connection_limit}")
        if self.tablespace != "pg_default":
            parts.append(f"tablespace {self.tablespace}")
        if self.settings or self.role_settings:
            parts.append(f"{len(self.settings) + len(self.role_settings)} setting(s)")
        parts.append("default access" if self.acl is None else f"access {self.acl}")
        if self.comment:
            parts.append("its comment")
        return ", ".join(parts)


_SHAPE_QUERY = """
SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
       {provider}, {icu}, d.datconnlimit, t.spcname, d.datallowconn, d.datistemplate,
       d.datacl::text, shobj_description(d.oid, 'pg_database'), pg_database_size(d.oid),
       (SELECT count(*) FROM pg_stat_activity a
         WHERE a.datid = d.oid AND a.pid <> pg_backend_pid()),
       d.oid
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
WHERE d.datname = %s
"""


def read_shape(conn: psycopg.Connection, name: str) -> DatabaseShape:
    """The shape of database ``name`` on the server ``conn`` is connected to."""
    major = server_major_version(conn)
    icu = "d.datlocale" if major >= 17 else "d.daticulocale" if major >= 15 else "NULL"
    provider = "d.datlocprovider::text" if major >= 15 else "NULL"
    query = sql.SQL(_SHAPE_QUERY).format(provider=sql.SQL(provider), icu=sql.SQL(icu))
    row = conn.execute(query, (name,)).fetchone()
    if row is None:
        raise ProviderError(f"database {name!r} does not exist on this server")
    (owner, encoding, collate, ctype, loc_provider, icu_locale, limit, tablespace) = row[:8]
    settings = conn.execute(
        "SELECT CASE WHEN setrole = 0 THEN NULL ELSE pg_get_userbyid(setrole) END, "
        "unnest(setconfig) FROM pg_db_role_setting WHERE setdatabase = %s ORDER BY 1 NULLS FIRST",
        (row[14],),
    ).fetchall()
    grants = conn.execute(
        "SELECT pg_get_userbyid(a.grantor), "
        "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
        "a.privilege_type, a.is_grantable "
        "FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s",
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
        tablespace=tablespace,
        allow_connections=bool(row[8]),
        is_template=bool(row[9]),
        settings=tuple(s for role, s in settings if role is None),
        role_settings=tuple((role, s) for role, s in settings if role is not None),
        acl=row[10],
        grants=tuple(Grant(*g) for g in grants),
        comment=row[11],
        size_bytes=int(row[12]),
        other_connections=int(row[13]),
    )


def create_statement(shape: DatabaseShape, name: str) -> sql.Composed:
    """``CREATE DATABASE name`` with ``shape``'s owner, locale, limit and tablespace."""
    parts = [
        sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} ").format(
            sql.Identifier(name), sql.Identifier(shape.owner), sql.Literal(shape.encoding)
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
    if shape.tablespace != "pg_default":
        parts.append(sql.SQL(" TABLESPACE {}").format(sql.Identifier(shape.tablespace)))
    return sql.Composed(parts)


def create_like(conn: psycopg.Connection, shape: DatabaseShape, name: str) -> None:
    """Create database ``name`` shaped like ``shape``: settings and comment included.

    ``conn`` is an autocommit connection to another database of the same server.
    Access is left open until :func:`apply_access`.
    """
    conn.execute(create_statement(shape, name))
    db = sql.Identifier(name)
    for role, setting in ((None, s) for s in shape.settings):
        _set(conn, db, role, setting)
    for role, setting in shape.role_settings:
        _set(conn, db, role, setting)
    if shape.comment is not None:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(shape.comment)))


def _set(conn: psycopg.Connection, db: sql.Identifier, role: str | None, setting: str) -> None:
    key, _, value = setting.partition("=")
    target = (
        sql.SQL("DATABASE {}").format(db)
        if role is None
        else sql.SQL("ROLE {} IN DATABASE {}").format(sql.Identifier(role), db)
    )
    conn.execute(
        sql.SQL("ALTER {} SET {} = {}").format(target, sql.Identifier(key), sql.Literal(value))
    )


def apply_access(conn: psycopg.Connection, shape: DatabaseShape, name: str) -> None:
    """Give database ``name`` exactly ``shape``'s ``datacl``, connection and template flags."""
    db = sql.Identifier(name)
    if shape.acl is not None:
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, sql.Identifier(shape.owner))
        )
        for grant in shape.grants:
            _grant(conn, db, grant, shape.owner)
    if not shape.allow_connections:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(db))
    if shape.is_template:
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(db))


def _grant(conn: psycopg.Connection, db: sql.Identifier, grant: Grant, owner: str) -> None:
    """Re-grant as the original grantor (a superuser's grant is recorded as the owner's)."""
    grantee = sql.SQL("PUBLIC") if grant.grantee == "PUBLIC" else sql.Identifier(grant.grantee)
    statement = sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
        sql.SQL(grant.privilege),
        db,
        grantee,
        sql.SQL(" WITH GRANT OPTION") if grant.grantable else sql.SQL(""),
    )
    if grant.grantor == owner:
        conn.execute(statement)
        return
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(grant.grantor)))
    try:
        conn.execute(statement)
    finally:
        conn.execute("RESET ROLE")
