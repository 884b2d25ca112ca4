import psycopg
import pytest

from providers.postgres.cluster import ThrowawayCluster

pytestmark = pytest.mark.postgres


def test_fresh_database_accepts_password_auth(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_wrong_password_is_refused(pg_cluster: ThrowawayCluster) -> None:
    bad = pg_cluster.url().replace(pg_cluster.password, "wrong-password")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(bad, connect_timeout=5)
