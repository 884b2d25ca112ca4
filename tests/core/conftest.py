"""The core's tests: the fake provider, a SQLite store, no PostgreSQL and no cloud."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.fake_provider  # noqa: F401  (registers the fake provider and its steps)
from bot.config import Settings, load_settings
from tests.fake_provider import reset_platform, write_fake_config


@pytest.fixture(scope="session")
def pg_cluster() -> None:
    pytest.fail("the core's tests run without PostgreSQL: use the fake provider")


@pytest.fixture(autouse=True)
def no_cluster_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a core test calls, no PostgreSQL server starts (the system's binaries are
    found in /usr/lib/postgresql whatever PATH says, so hiding them is no guard)."""
    from providers.postgres.cluster import ThrowawayCluster

    def refuse(self: ThrowawayCluster) -> ThrowawayCluster:
        pytest.fail("the core's tests run without PostgreSQL: a cluster was about to start")

    monkeypatch.setattr(ThrowawayCluster, "start", refuse)


@pytest.fixture(autouse=True)
def fresh_platform() -> None:
    """Each test starts on a fresh fake platform (one may reset it again with options)."""
    reset_platform()


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def settings(tmp_path: Path, state_url: str) -> Settings:
    return load_settings(write_fake_config(tmp_path, state_url))
