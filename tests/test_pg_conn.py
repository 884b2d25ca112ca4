import pytest

from bot.errors import ProviderError
from providers.postgres.cluster import ThrowawayCluster, free_port
from providers.postgres.conn import connect, server_major_version

pytestmark = pytest.mark.postgres


def test_wrong_password_message_is_clear_and_secret_free(pg_cluster: ThrowawayCluster) -> None:
    bad = pg_cluster.url().replace(pg_cluster.password, "not-the-password-xyz")
    with pytest.raises(ProviderError) as err:
        connect(bad)
    assert "password authentication failed" in str(err.value)
    assert "not-the-password-xyz" not in str(err.value)
    assert pg_cluster.password not in str(err.value)


def test_unreachable_server() -> None:
    with pytest.raises(ProviderError, match="unreachable"):
        connect(f"postgresql://u:secretpw@127.0.0.1:{free_port()}/db", connect_timeout=2)


def test_server_version(pg_url: str, pg_cluster: ThrowawayCluster) -> None:
    with connect(pg_url) as conn:
        assert server_major_version(conn) == pg_cluster.major_version
