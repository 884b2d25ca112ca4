"""Fixtures: the fake Slack, a config, and rollbot served in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from providers.postgres.cluster import ThrowawayCluster, free_port
from tests.slack.driver import HttpTransport, SlackDriver, SocketTransport
from tests.slack.fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.slack.fake_socket import FakeSocketMode
from tests.slack.signing import SIGNING_SECRET

ROOT = Path(__file__).resolve().parents[2]
REQUESTER, ALICE, BOB, MALLORY = "U0REQ", "U0ALICE", "U0BOB", "U0MALLORY"
DBA_GROUP = "S0DBAS"

CONFIG = """
database_url = "sqlite:///{state}"
audit_log = "{audit}"

[approvals]
users = ["{alice}"]
groups = ["{group}"]

[approvals.production]
min_approvals = 1
requester_may_approve = false
ttl_minutes = 30

[environments.development]
tier = "development"
database_url_env = "ROLLBOT_SLACK_DEV_URL"
backups = "{backups}/development"

[environments.staging]
tier = "staging"
database_url_env = "ROLLBOT_SLACK_STAGING_URL"
backups = "{backups}/staging"

[environments.production]
tier = "production"
database_url_env = "ROLLBOT_SLACK_PROD_URL"
backups = "{backups}/production"

[environments.production.commands]
app_rollback = "echo app rolled back"
timeout_seconds = 60
"""


def write_slack_config(folder: Path) -> Path:
    path = folder / "rollbot.toml"
    path.write_text(
        textwrap.dedent(
            CONFIG.format(
                state=folder / "state.db",
                audit=folder / "audit.log",
                backups=folder / "backups",
                alice=ALICE,
                group=DBA_GROUP,
            )
        )
    )
    return path


@contextmanager
def running_fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    fake.groups[DBA_GROUP] = [BOB]
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def prod_db(pg_cluster: ThrowawayCluster) -> str:
    return pg_cluster.create_database(f"slack_prod_{os.getpid()}_{time.monotonic_ns() % 10**6}")


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"rollbot serve exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"rollbot serve did not come up:\n{log.read_text()[-3000:]}")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def served_env(fake: FakeSlack, prod_db: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_APP_TOKEN=APP_TOKEN,
        ROLLBOT_SLACK_API_URL=fake.url,
        ROLLBOT_SLACK_PROD_URL=prod_db,
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="module")
def http_driver(prod_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackDriver]:
    with running_fake_slack() as fake:
        yield from _http_driver(fake, prod_db, tmp_path_factory)


def _http_driver(
    fake_slack: FakeSlack, prod_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SlackDriver]:
    folder = tmp_path_factory.mktemp("slack_http")
    config = write_slack_config(folder)
    port = free_port()
    log = folder / "serve.log"
    proc = _spawn(
        ["--config", str(config), "serve", "--http", "--host", "127.0.0.1", "--port", str(port)],
        served_env(fake_slack, prod_db),
        log,
    )
    try:
        _wait_port(port, proc, log)
        yield SlackDriver(fake_slack, HttpTransport(f"http://127.0.0.1:{port}"), config, log)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def socket_driver(prod_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackDriver]:
    with running_fake_slack() as fake:
        yield from _socket_driver(fake, prod_db, tmp_path_factory)


def _socket_driver(
    fake_slack: FakeSlack, prod_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SlackDriver]:
    folder = tmp_path_factory.mktemp("slack_socket")
    config = write_slack_config(folder)
    ws = FakeSocketMode().start()
    fake_slack.ws_url = ws.url
    log = folder / "serve.log"
    proc = _spawn(
        ["--config", str(config), "serve", "--socket"], served_env(fake_slack, prod_db), log
    )
    try:
        try:
            ws.wait_connected(30)
        except AssertionError:
            raise AssertionError(f"no Socket Mode connection:\n{log.read_text()[-3000:]}") from None
        yield SlackDriver(fake_slack, SocketTransport(ws), config, log)
    finally:
        _stop(proc)
        ws.stop()
