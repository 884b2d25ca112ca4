"""Fixtures: the fake Slack, and rollbot served in real processes for the whole session.

One HTTP app and one Socket Mode app serve every test that does not need a
server of its own (crash and outage tests start theirs). The secret scan
(``test_secrets.py``) runs last, over everything every served app emitted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from providers.postgres.cluster import ThrowawayCluster
from tests.slack.driver import SlackDriver
from tests.slack.fake_slack import FakeSlack
from tests.slack.serving import (  # noqa: F401  (re-exported for the test modules)
    ALICE,
    BOB,
    DBA_GROUP,
    MALLORY,
    REQUESTER,
    serve,
    served_env,
    write_slack_config,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The secret scan reads what all other tests made the apps emit: run it last."""
    last = [i for i in items if i.get_closest_marker("scan_last")]
    items[:] = [i for i in items if i not in last] + last


@contextmanager
def running_fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    fake.groups[DBA_GROUP] = [BOB]
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def prod_db(pg_cluster: ThrowawayCluster) -> Iterator[str]:
    name = f"slack_prod_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    yield pg_cluster.create_database(name)
    pg_cluster.drop_database(name)


@pytest.fixture(scope="session")
def http_driver(prod_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackDriver]:
    with running_fake_slack() as fake:
        served = serve(fake, prod_db, tmp_path_factory.mktemp("slack_http"), "http")
        try:
            yield served.driver()
        finally:
            served.stop()


@pytest.fixture(scope="session")
def socket_driver(prod_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackDriver]:
    with running_fake_slack() as fake:
        served = serve(fake, prod_db, tmp_path_factory.mktemp("slack_socket"), "socket")
        try:
            yield served.driver()
        finally:
            served.stop()
            assert served.ws is not None
            served.ws.stop()
