"""Development reset on a real PostgreSQL: refused outside development, complete inside it."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import psycopg
import pytest

from bot.errors import ProviderError, RollbotError
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.reset import ResetRefusedError, plan_reset, reset_database

pytestmark = pytest.mark.postgres
_counter = itertools.count(1)

MIGRATIONS = {
    "0000_users": 'CREATE TABLE "users" ("id" serial PRIMARY KEY, "email" text NOT NULL);',
    "0001_posts": 'CREATE TABLE "posts" ("id" serial PRIMARY KEY, "user_id" int);',
}


def make_folder(root: Path) -> Path:
    (root / "meta").mkdir(parents=True, exist_ok=True)
    entries = [
        {"idx": i, "version": "7", "when": 1700000000000 + i, "tag": tag, "breakpoints": True}
        for i, tag in enumerate(MIGRATIONS)
    ]
    (root / "meta" / "_journal.json").write_text(
        json.dumps({"version": "7", "dialect": "postgresql", "entries": entries})
    )
    for tag, text in MIGRATIONS.items():
        (root / f"{tag}.sql").write_text(text)
    return root


@pytest.fixture
def migrated(pg_url: str, tmp_path: Path) -> str:
    """A migrated database holding data."""
    journal = read_journal(make_folder(tmp_path / "migrations"))
    apply_migrations(pg_url, journal)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (email) SELECT 'u' || g FROM generate_series(1, 50) g")
        conn.execute("CREATE TABLE scratch (x int)")
    return pg_url


def count_users(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM users").fetchone()[0]


@pytest.mark.parametrize("tier", ["production", "staging", "Development", ""])
def test_refused_outside_development_and_nothing_touched(migrated: str, tier: str) -> None:
    calls: list[str] = []
    with pytest.raises(ResetRefusedError, match=f"its tier is {tier!r}") as info:
        reset_database(migrated, tier, calls.append)
    assert isinstance(info.value, RollbotError)
    with pytest.raises(ResetRefusedError):
        plan_reset(migrated, tier)
    assert calls == []
    assert count_users(migrated) == 50


def test_refused_for_unreachable_server_without_connecting_first(
    pg_cluster: ThrowawayCluster,
) -> None:
    url = pg_cluster.url("whatever").replace(f":{pg_cluster.port}/", ":1/")
    with pytest.raises(ResetRefusedError):
        reset_database(url, "production", lambda _u: None)
    with pytest.raises(ProviderError, match="cannot connect") as info:
        reset_database(url, "development", lambda _u: None)
    assert pg_cluster.password not in str(info.value)


def test_refuses_maintenance_database(pg_cluster: ThrowawayCluster) -> None:
    with pytest.raises(ResetRefusedError, match="maintenance database"):
        reset_database(pg_cluster.url("postgres"), "development", lambda _u: None)


def test_development_reset_drops_data_and_reapplies_migrations(
    pg_cluster: ThrowawayCluster, migrated: str, tmp_path: Path
) -> None:
    journal = read_journal(tmp_path / "migrations")
    plan = plan_reset(migrated, "development")
    assert plan.shape.encoding == "UTF8"
    text = str(plan)
    assert "ALL its data is lost" in text and "DROP DATABASE" in text
    assert pg_cluster.password not in text

    holder = psycopg.connect(migrated)  # an application connection: forced off
    holder.execute("SELECT count(*) FROM users")
    migrated_urls: list[str] = []

    def migrate(url: str) -> None:
        migrated_urls.append(url)
        apply_migrations(url, journal)

    result = reset_database(migrated, "development", migrate)
    assert migrated_urls == [migrated]
    assert set(result.seconds) == {"drop", "create", "migrate"}
    assert holder.closed or holder.broken or _is_disconnected(holder)
    holder.close()
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
        assert conn.execute("SELECT to_regclass('scratch')").fetchone() == (None,)
        rows = conn.execute(
            "SELECT created_at FROM drizzle.__drizzle_migrations ORDER BY id"
        ).fetchall()
        assert [r[0] for r in rows] == [e.when for e in journal.entries]


def _is_disconnected(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def test_reset_keeps_owner_settings_and_grants(
    pg_cluster: ThrowawayCluster, request: pytest.FixtureRequest
) -> None:
    name = f"reset_shape_{next(_counter)}"
    request.addfinalizer(lambda: pg_cluster.drop_database(name))
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN CREATE ROLE app_owner; EXCEPTION WHEN duplicate_object THEN END $$"
        )
        conn.execute(
            "DO $$ BEGIN CREATE ROLE app_reader; EXCEPTION WHEN duplicate_object THEN END $$"
        )
        conn.execute(f"CREATE DATABASE {name} OWNER app_owner CONNECTION LIMIT 20")
        conn.execute(f"ALTER DATABASE {name} SET statement_timeout = '5s'")
        conn.execute(f"REVOKE CONNECT ON DATABASE {name} FROM PUBLIC")
        conn.execute(f"GRANT CONNECT ON DATABASE {name} TO app_reader")

    def shape() -> tuple:
        with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
            return conn.execute(
                "SELECT pg_get_userbyid(datdba), datconnlimit, datacl::text[], "
                "(SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid "
                "AND setrole = 0) FROM pg_database d WHERE datname = %s",
                (name,),
            ).fetchone()

    before = shape()
    url = pg_cluster.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE junk AS SELECT generate_series(1, 10) AS x")
    reset_database(url, "development", lambda _u: None)
    after = shape()
    assert after == before
    assert after[0] == "app_owner" and after[1] == 20 and after[3] == ["statement_timeout=5s"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('junk')").fetchone() == (None,)


def test_failing_migration_is_reported_clearly(migrated: str) -> None:
    def broken(_url: str) -> None:
        raise RuntimeError('syntax error at or near "CREAT"')

    with pytest.raises(ProviderError, match="re-created empty but the migrations failed: syntax"):
        reset_database(migrated, "development", broken)
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT to_regclass('users')").fetchone() == (None,)
