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


def test_drop_database_ends_sessions_left_open(pg_cluster: ThrowawayCluster) -> None:
    """A test that forgets a connection must not make the cleanup wait or fail."""
    left_open = psycopg.connect(pg_cluster.create_database("dropped_with_a_session"))
    left_open.execute("BEGIN; CREATE TABLE t (id int)")  # holding locks, idle in transaction
    pg_cluster.drop_database("dropped_with_a_session")
    pg_cluster.drop_database("dropped_with_a_session")  # already gone: nothing to do
    with psycopg.connect(pg_cluster.url()) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database")]
    assert "dropped_with_a_session" not in names
    with pytest.raises(psycopg.OperationalError):
        left_open.execute("SELECT 1")
    left_open.close()
