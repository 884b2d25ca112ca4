"""The rule of tests/core: the core is tested with the fake provider, never PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.service import Rollbot
from providers.postgres.cluster import ThrowawayCluster

CORE_TESTS = Path(__file__).resolve().parent
POSTGRES_FIXTURES = {"pg_cluster", "pg_url", "new_database"}


def test_no_core_test_asks_for_postgresql(request: pytest.FixtureRequest) -> None:
    """Every test collected under tests/core, and every fixture it uses (transitively),
    stays away from the session's PostgreSQL cluster."""
    core_items = [
        item for item in request.session.items if Path(item.path).is_relative_to(CORE_TESTS)
    ]
    assert request.node in core_items
    offenders = {
        item.nodeid: sorted(POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())))
        for item in core_items
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_core_tests_use_the_fake_provider_and_sqlite(bot: Rollbot) -> None:
    assert bot.store.dialect == "sqlite"
    assert {env.provider for env in bot.settings.environments.values()} == {"fake"}


def test_a_cluster_cannot_start_here(tmp_path: Path) -> None:
    cluster = ThrowawayCluster(bindir=tmp_path, root=tmp_path)
    with pytest.raises(pytest.fail.Exception, match="without PostgreSQL"), cluster:
        pass
    assert not cluster.running
