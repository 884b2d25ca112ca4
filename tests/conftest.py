"""Shared fixtures: a throwaway PostgreSQL cluster per test session."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from providers.postgres.cluster import ThrowawayCluster

pytest_plugins = ["tests.core_fixtures"]

_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[ThrowawayCluster]:
    """One PostgreSQL server for the whole session (about 1 s to start)."""
    with ThrowawayCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: ThrowawayCluster) -> str:
    """URL of a fresh, empty database on the session's cluster."""
    return pg_cluster.create_database(f"t{next(_db_counter)}")
