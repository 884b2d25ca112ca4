"""A rollbot configured for a Cloud SQL environment served by the local Cloud SQL API fake.

The fake holds the Admin API; the databases are real, on the session's PostgreSQL
cluster. ``live`` is the app's database, migrated through the problematic migration;
``snap`` is the same database before it (what a backup, or a clone at the restore point,
holds). The fake's hooks stand in for Google's data work: a restore or clone that reaches
DONE makes ``live`` a copy of ``snap``. The source instance's own IP is TEST-NET
(192.0.2.10), so a step that connected to the source instead of the new instance fails.
"""

from __future__ import annotations

import getpass
import itertools
import shutil
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from bot.config import Settings
from handlers.runtime import load_config
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.postgres.cluster import ThrowawayCluster
from tests.cloudsql_api import SPEC_PATH, CloudSqlApiServer, missing_spec_reason, spec_available
from tests.config_text import TEAM_HEAD

EXAMPLE = Path(__file__).resolve().parents[1] / "handlers" / "drill" / "example_migrations"
BEFORE_HEAD = "0002_tidy_logins"
PROBLEMATIC = "0003_hasty_priority"
INSTANCE = "prod-db"
SOURCE_IP = "192.0.2.10"
URL_ENV = "CLOUDSQL_TEST_DATABASE_URL"
_names = itertools.count(1)

CONFIG = (
    TEAM_HEAD
    + """
[environments.production]
tier = "production"
provider = "cloudsql"
database_url_env = "{url_env}"
migrations_dir = "{migrations}"

[environments.production.cloudsql]
project = "{project}"
instance = "{instance}"
api_url = "{api_url}"
auth = "none"
discovery_document = "{spec}"
poll_seconds = 0.02
api_wait_seconds = 2
connect_port = {port}
"""
)


@dataclass
class CloudSqlSetup:
    api: CloudSqlApiServer
    cluster: ThrowawayCluster
    config: Path
    settings: Settings
    migrations: Path
    live: str
    snap: str

    def live_url(self) -> str:
        return self.cluster.url(self.live)

    def source_url(self) -> str:
        """The app's URL as it is on Google: the source instance's host, port 5432."""
        parts = urlsplit(self.live_url())
        userinfo = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{SOURCE_IP}:5432"))

    def restore_snapshot_into_live(self) -> None:
        """What Google's restore or clone leaves: ``live`` holds ``snap``'s data."""
        with psycopg.connect(self.cluster.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.live))
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(self.live), sql.Identifier(self.snap)
                )
            )

    def mutations(self) -> list[str]:
        return self.api.calls(mutating_only=True)


def has_priority_column(url: str) -> bool:
    """The problematic migration's mark: a ``priority`` column in the public schema."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'priority'"
        ).fetchone()
    return bool(row and row[0])


@pytest.fixture
def cloudsql_setup(
    pg_cluster: ThrowawayCluster,
    new_database: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[CloudSqlSetup]:
    if not spec_available():
        pytest.skip(missing_spec_reason())
    migrations = tmp_path / "migrations"
    shutil.copytree(EXAMPLE, migrations)
    live = f"csql{next(_names)}"
    snap = f"{live}_snap"  # dropped with live by new_database (named after it)
    journal = read_journal(migrations)
    apply_migrations(new_database(live), journal)
    apply_migrations(pg_cluster.create_database(snap), journal, upto=2)
    with CloudSqlApiServer(project="rollbot-test") as api:
        api.add_instance(INSTANCE, ip=SOURCE_IP)
        now = datetime.now(UTC)
        api.add_backup(INSTANCE, started=now - timedelta(hours=30))
        api.add_backup(INSTANCE, started=now - timedelta(hours=6))
        api.add_backup(INSTANCE, started=now - timedelta(hours=1), status="FAILED")
        monkeypatch.setenv(URL_ENV, pg_cluster.url(live))
        config = tmp_path / "rollbot.toml"
        config.write_text(
            textwrap.dedent(
                CONFIG.format(
                    state=tmp_path / "state.db",
                    os_user=getpass.getuser(),
                    url_env=URL_ENV,
                    migrations=migrations,
                    project=api.project,
                    instance=INSTANCE,
                    api_url=api.url,
                    spec=SPEC_PATH,
                    port=pg_cluster.port,
                )
            )
        )
        setup = CloudSqlSetup(api, pg_cluster, config, load_config(config), migrations, live, snap)
        api.state.on_restore = lambda _instance: setup.restore_snapshot_into_live()
        api.state.on_clone = lambda _instance: setup.restore_snapshot_into_live()
        yield setup
