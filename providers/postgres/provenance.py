"""Where a snapshot came from and what it needs: source server, database, roles.

Recorded in the manifest at snapshot time so a restore can refuse, at plan time and
before any safety snapshot is taken, a snapshot of another database or server, or one
whose objects belong to roles the target server lacks (``pg_restore`` would otherwise
fail half-way with ``role "x" does not exist``).
"""

from __future__ import annotations

from typing import Any

import psycopg

_USER_SCHEMA = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
)
_NOT_EXTENSION_MEMBER = (
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = {cat}::regclass "
    "AND d.objid = {alias}.oid AND d.deptype = 'e')"
)

# Every role a dump of the database names: object owners and the grantees and grantors
# of their privileges (PUBLIC left out), the way pg_restore will ask for them.
_ROLES_QUERY = f"""
WITH refs(role) AS (
  SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE {_USER_SCHEMA} AND {_NOT_EXTENSION_MEMBER.format(cat="'pg_class'", alias="c")}
  UNION SELECT n.nspowner FROM pg_namespace n WHERE {_USER_SCHEMA} AND n.nspname <> 'public'
  UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE {_USER_SCHEMA} AND {_NOT_EXTENSION_MEMBER.format(cat="'pg_proc'", alias="p")}
  UNION SELECT t.typowner FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
   WHERE {_USER_SCHEMA} AND {_NOT_EXTENSION_MEMBER.format(cat="'pg_type'", alias="t")}
  UNION SELECT lomowner FROM pg_largeobject_metadata
  UNION SELECT defaclrole FROM pg_default_acl
  UNION SELECT a.grantee FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
         aclexplode(c.relacl) a WHERE {_USER_SCHEMA}
  UNION SELECT a.grantor FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
         aclexplode(c.relacl) a WHERE {_USER_SCHEMA}
  UNION SELECT a.grantee FROM pg_namespace n, aclexplode(n.nspacl) a WHERE {_USER_SCHEMA}
  UNION SELECT a.grantee FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
         aclexplode(p.proacl) a WHERE {_USER_SCHEMA}
  UNION SELECT a.grantee FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace,
         aclexplode(t.typacl) a WHERE {_USER_SCHEMA}
  UNION SELECT a.grantee FROM pg_largeobject_metadata l, aclexplode(l.lomacl) a
  UNION SELECT a.grantee FROM pg_default_acl d, aclexplode(d.defaclacl) a
  UNION SELECT a.grantee FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(t.attacl) a
   WHERE {_USER_SCHEMA}
)
SELECT DISTINCT pg_get_userbyid(role) AS name FROM refs WHERE role <> 0 ORDER BY 1
"""


def roles_needed(conn: psycopg.Connection) -> list[str]:
    """Roles a dump of ``conn``'s database names (owners, grantees, grantors)."""
    return [row[0] for row in conn.execute(_ROLES_QUERY).fetchall()]


def missing_roles(conn: psycopg.Connection, roles: list[str]) -> list[str]:
    """Those of ``roles`` that do not exist on ``conn``'s server."""
    if not roles:
        return []
    rows = conn.execute(
        "SELECT r FROM unnest(%s::text[]) r "
        "WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) ORDER BY 1",
        (roles,),
    ).fetchall()
    return [row[0] for row in rows]


def system_identifier(conn: psycopg.Connection) -> str | None:
    """The server's ``pg_control_system()`` identifier, None when the role may not read it.

    Run in a savepoint so a refusal does not abort the caller's transaction (a snapshot
    reads it inside the transaction pg_dump shares).
    """
    try:
        with conn.transaction():
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return str(row[0]) if row else None


def data_size(conn: psycopg.Connection) -> int:
    """Bytes of user tables, their indexes and TOAST: the database's size without the
    ~7 MB of catalog every database has, so sizes compare like with like."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') "
        f"AND {_USER_SCHEMA}"
    ).fetchone()
    return int(row[0]) if row else 0


def source_of(conn: psycopg.Connection) -> dict[str, Any]:
    """What the manifest records about where a dump comes from."""
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return {
        "database": row[0],
        "data_size": data_size(conn),
        "system_identifier": system_identifier(conn),
        "roles": roles_needed(conn),
    }
