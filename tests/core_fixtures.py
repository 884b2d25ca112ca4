"""Settings and a Rollbot on SQLite or a real PostgreSQL, for the core tests."""

from __future__ import annotations

import getpass
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.config import Settings, load_settings

if TYPE_CHECKING:
    from bot.service import Rollbot

CONFIG = """
[cli.identities]
{os_user} = ["alice", "bob", "carol", "mallory"]

[approvals]
users = ["alice", "bob", "carol"]

[approvals.production]
min_approvals = 1
requester_may_approve = false
ttl_minutes = 30

[environments.development]
tier = "development"
database_url_env = "ROLLBOT_TEST_DEV_URL"
backups = "{backups}/development"

[environments.staging]
tier = "staging"
database_url_env = "ROLLBOT_TEST_STAGING_URL"
backups = "{backups}/staging"

[environments.production]
tier = "production"
database_url_env = "ROLLBOT_TEST_PROD_URL"
backups = "{backups}/production"

[environments.production.commands]
app_rollback = "{app_rollback}"
timeout_seconds = 120
"""


def write_config(
    tmp_path: Path, state_url: str, app_rollback: str = "echo app rolled back"
) -> Path:
    path = tmp_path / "rollbot.toml"
    body = CONFIG.format(
        backups=tmp_path / "backups", app_rollback=app_rollback, os_user=getpass.getuser()
    )
    # A PostgreSQL state URL carries a password: it goes in ROLLBOT_DATABASE_URL, never the file.
    head = f'database_url = "{state_url}"\n' if state_url.startswith("sqlite") else ""
    path.write_text(head + 'audit_log = "audit.log"\n' + textwrap.dedent(body))
    return path


class Clock:
    """A clock the tests move forward (approval expiry)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def settings(tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    if not state_url.startswith("sqlite"):
        monkeypatch.setenv("ROLLBOT_DATABASE_URL", state_url)
    return load_settings(write_config(tmp_path, state_url))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bot(settings: Settings, clock: Clock) -> Iterator[Rollbot]:
    from bot.service import Rollbot
    from handlers.runtime import register_provider_steps

    register_provider_steps()
    rollbot = Rollbot.open(settings, clock=clock)
    yield rollbot
    rollbot.store.dispose()


def started_restore(bot: Rollbot, description: str) -> int:
    """A production data-corruption incident with its PITR plan approved and started."""
    incident = bot.open_incident("alice", description, environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    bot.choose_method(incident.id, "pitr", "alice")
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    return incident.id
