"""A database's own shape (access, comment, settings) survives a swap restore and a reset."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.conn import dbname
from providers.postgres.database import read_shape
from providers.postgres.reset import reset_database
from providers.postgres.restore import restore_snapshot
from providers.postgres.snapshot import create_snapshot
from providers.storage import LocalStorage

pytestmark = pytest.mark.postgres
PASSWORD = "not-a-secret-test-only"
LOGIN = f"LOGIN PASSWORD '{PASSWORD}'"


def _role(conn: psycopg.Connection, name: str, login: bool = False) -> None:
    conn.execute(
        f"DO $$ BEGIN CREATE ROLE {name} {LOGIN if login else ''}; "
        "EXCEPTION WHEN duplicate_object THEN END $$"
    )


def shape_it(cluster: ThrowawayCluster, db: str) -> None:
    """Lock the database down the way a careful team does, and describe it."""
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        _role(conn, "app_reader", login=True)
        _role(conn, "app_admin")
        _role(conn, "stranger", login=True)
        conn.execute(f"REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC")
        conn.execute(f"GRANT CONNECT ON DATABASE {db} TO app_reader")
        conn.execute(f"GRANT CONNECT, CREATE ON DATABASE {db} TO app_admin WITH GRANT OPTION")
        conn.execute(f"COMMENT ON DATABASE {db} IS 'payments: PCI scope, ask #dba'")
        conn.execute(f"ALTER DATABASE {db} SET statement_timeout = '7s'")
        conn.execute(
            f"ALTER ROLE app_reader IN DATABASE {db} SET default_transaction_read_only = on"
        )
        conn.execute(f"ALTER DATABASE {db} CONNECTION LIMIT 40")


def described(cluster: ThrowawayCluster, db: str) -> tuple:
    """Everything about the database object a restore must bring back (not its oid or size)."""
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        s = read_shape(conn, db)
        grants = sorted((g.grantor, g.grantee, g.privilege, g.grantable) for g in s.grants)
    return (s.owner, s.connection_limit, grants, s.comment, s.settings, s.role_settings)


def can_connect(cluster: ThrowawayCluster, db: str, role: str) -> bool:
    try:
        with psycopg.connect(cluster.url(db), user=role, password=PASSWORD):
            return True
    except psycopg.OperationalError as exc:
        assert "permission denied" in str(exc), exc
        return False


def test_swap_restore_keeps_access_comment_and_settings(
    pg_cluster: ThrowawayCluster, pg_url: str, tmp_path: Path
) -> None:
    db = dbname(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT generate_series(1, 100) AS x")
    shape_it(pg_cluster, db)
    before = described(pg_cluster, db)
    assert not can_connect(pg_cluster, db, "stranger")
    assert can_connect(pg_cluster, db, "app_reader")
    storage = LocalStorage(tmp_path / "backups")
    snap = create_snapshot(pg_url, storage)

    result = restore_snapshot(pg_url, storage, snap.name)

    assert result.kept_database
    assert described(pg_cluster, db) == before
    assert not can_connect(pg_cluster, db, "stranger")  # not re-opened to PUBLIC
    assert can_connect(pg_cluster, db, "app_reader")
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)


def test_reset_keeps_access_comment_and_settings(pg_cluster: ThrowawayCluster, pg_url: str) -> None:
    db = dbname(pg_url)
    shape_it(pg_cluster, db)
    before = described(pg_cluster, db)

    reset_database(pg_url, "development", lambda _url: None)

    assert described(pg_cluster, db) == before
    assert not can_connect(pg_cluster, db, "stranger")
