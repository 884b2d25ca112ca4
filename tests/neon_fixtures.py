"""A rollbot configured for Neon environments served by the local Neon API server.

The staging and production environments are branches of one fake Neon project; each
branch is a real database on the session's PostgreSQL cluster, migrated with the drill's
example drizzle folder to just before its newest ("problematic") migration.
"""

from __future__ import annotations

import getpass
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.config import Settings
from handlers.runtime import load_config
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.postgres.cluster import ThrowawayCluster
from tests.config_text import TEAM_HEAD
from tests.neon_api import NeonApiServer, missing_spec_reason, spec_available

EXAMPLE = Path(__file__).resolve().parents[1] / "handlers" / "drill" / "example_migrations"
API_KEY = "neon-test-key-7f3a9c1e5b"
BEFORE_HEAD = "0002_tidy_logins"
PROBLEMATIC = "0003_hasty_priority"

CONFIG = (
    TEAM_HEAD
    + """
[environments.staging]
tier = "staging"
provider = "neon"
database_url_env = "NEON_TEST_STAGING_URL"
migrations_dir = "{migrations}"

[environments.staging.neon]
project_id = "{project}"
api_url = "{api_url}"
api_key_env = "NEON_TEST_API_KEY"
poll_seconds = 0.05

[environments.production]
tier = "production"
provider = "neon"
database_url_env = "NEON_TEST_STAGING_URL"
migrations_dir = "{migrations}"

[environments.production.neon]
project_id = "{project}"
api_url = "{api_url}"
api_key_env = "NEON_TEST_API_KEY"
poll_seconds = 0.05
"""
)


@dataclass
class NeonSetup:
    server: NeonApiServer
    config: Path
    settings: Settings
    migrations: Path

    def main_url(self) -> str:
        return self.server.branch_url(self.server.default_branch().id)

    def apply_problematic(self, url: str | None = None) -> None:
        applied = apply_migrations(url or self.main_url(), read_journal(self.migrations))
        assert [e.tag for e in applied] == [PROBLEMATIC]

    def mutations(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.server.requests if r.method != "GET"]


@pytest.fixture
def neon_setup(
    pg_cluster: ThrowawayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NeonSetup]:
    if not spec_available():
        pytest.skip(missing_spec_reason())
    migrations = tmp_path / "migrations"
    shutil.copytree(EXAMPLE, migrations)
    with NeonApiServer(pg_cluster, api_key=API_KEY, op_polls=2) as server:
        main = server.default_branch()
        apply_migrations(server.branch_url(main.id), read_journal(migrations), upto=2)
        server.checkpoint(main.id)
        monkeypatch.setenv("NEON_TEST_API_KEY", API_KEY)
        monkeypatch.setenv("NEON_TEST_STAGING_URL", server.branch_url(main.id))
        config = tmp_path / "rollbot.toml"
        config.write_text(
            textwrap.dedent(
                CONFIG.format(
                    state=tmp_path / "state.db",
                    os_user=getpass.getuser(),
                    migrations=migrations,
                    project=server.project_id,
                    api_url=server.url,
                )
            )
        )
        yield NeonSetup(server, config, load_config(config), migrations)
