"""The core's tests: the fake provider, a SQLite store, no PostgreSQL and no cloud."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

import tests.fake_provider  # noqa: F401  (registers the fake provider and its steps)
from bot.config import TIERS, Settings, load_settings


@pytest.fixture(scope="session")
def pg_cluster() -> None:
    pytest.fail("the core's tests run without PostgreSQL: use the fake provider")


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


FAKE_CONFIG = """
database_url = "{state_url}"
audit_log = "audit.log"

[cli.identities]
{os_user} = ["alice", "bob", "carol", "mallory"]

[approvals]
users = ["alice", "bob", "carol"]

[approvals.production]
min_approvals = 1
requester_may_approve = false
ttl_minutes = 30
{environments}
"""

ENVIRONMENT = """
[environments.{tier}]
tier = "{tier}"
provider = "fake"
database_url_env = "ROLLBOT_TEST_{upper}_URL"

[environments.{tier}.fake]
database = "main"

[environments.{tier}.commands]
app_rollback = "echo app rolled back"
"""


@pytest.fixture
def settings(tmp_path: Path, state_url: str) -> Settings:
    environments = "".join(ENVIRONMENT.format(tier=tier, upper=tier.upper()) for tier in TIERS)
    path = tmp_path / "rollbot.toml"
    path.write_text(
        FAKE_CONFIG.format(
            state_url=state_url, os_user=getpass.getuser(), environments=environments
        )
    )
    return load_settings(path)
