"""Shared fixtures: a throwaway PostgreSQL cluster per test session."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import psycopg
import pytest

from handlers.runtime import register_provider_steps
from providers.postgres.cluster import ThrowawayCluster

pytest_plugins = ["tests.core_fixtures", "tests.neon_fixtures"]
# Provider sections are validated by models the providers register: before any config loads.
register_provider_steps()

_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[ThrowawayCluster]:
    """One PostgreSQL server for the whole session (about 1 s to start)."""
    with ThrowawayCluster() as cluster:
        yield cluster


def named_after(cluster: ThrowawayCluster, name: str) -> list[str]:
    """Databases whose name extends ``name`` (a restore keeps ``<name>_before_restore_<time>``)."""
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (f"{name}_",)
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def new_database(pg_cluster: ThrowawayCluster) -> Iterator[Callable[[str], str]]:
    """Create a database on the session's cluster by name; its URL back. Dropped after the test.

    Dropped, with the databases named after it, so the cluster does not pile up hundreds
    of them: removing such a data directory (gigabytes, tens of thousands of files) made
    the last test's teardown take minutes.
    """
    names: list[str] = []

    def create(name: str) -> str:
        names.append(name)
        return pg_cluster.create_database(name)

    yield create
    for name in names:
        for derived in named_after(pg_cluster, name):
            pg_cluster.drop_database(derived)
        pg_cluster.drop_database(name)


@pytest.fixture
def pg_url(new_database: Callable[[str], str]) -> str:
    """URL of a fresh, empty database on the session's cluster, dropped after the test."""
    return new_database(f"t{next(_db_counter)}")
