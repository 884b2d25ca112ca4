"""The wrong snapshot is refused at plan time: another database, missing roles."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from providers.postgres.conn import dbname
from providers.postgres.restore import plan_restore, restore_snapshot
from providers.postgres.restore_checks import RestoreOptions, RestoreRefusedError
from providers.postgres.snapshot import create_snapshot, list_snapshots
from providers.storage import LocalStorage

pytestmark = pytest.mark.postgres
_roles = itertools.count(1)


def fill(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE payments (id int PRIMARY KEY, note text)")
        conn.execute(
            "INSERT INTO payments SELECT i, repeat(md5(i::text), 8) FROM generate_series(1, %s) i",
            (rows,),
        )


def test_snapshot_of_another_database_needs_explicit_confirmation(
    pg_url: str, new_database: Callable[[str], str], tmp_path: Path
) -> None:
    fill(pg_url, 60_000)
    other = new_database(f"{dbname(pg_url)}_other")
    with psycopg.connect(other, autocommit=True) as conn:
        conn.execute("CREATE TABLE lonely (x int)")
    storage = LocalStorage(tmp_path / "backups")
    foreign = create_snapshot(other, storage)  # sits in production's backups folder

    with pytest.raises(RestoreRefusedError, match="ANOTHER DATABASE") as refused:
        plan_restore(pg_url, storage, foreign.name)
    assert "accept_other_source" in str(refused.value)
    with pytest.raises(RestoreRefusedError, match="ANOTHER DATABASE"):
        restore_snapshot(pg_url, storage, foreign.name)
    assert [s.name for s in list_snapshots(storage)] == [foreign.name]  # no safety snapshot

    plan = plan_restore(
        pg_url, storage, foreign.name, options=RestoreOptions(accept_other_source=True)
    )
    text = str(plan)
    assert f"Snapshot of database {dbname(other)}" in text
    assert f"the target {dbname(pg_url)} is" in text and "MB now" in text
    assert "*CONFIRMED: this restores a snapshot of ANOTHER DATABASE" in text
    assert "under a tenth of the" in text


def test_same_database_shows_source_and_sizes_without_warnings(pg_url: str, tmp_path: Path) -> None:
    fill(pg_url, 2_000)
    storage = LocalStorage(tmp_path / "backups")
    snap = create_snapshot(pg_url, storage)
    assert snap.manifest and snap.manifest["system_identifier"]
    text = str(plan_restore(pg_url, storage, snap.name))
    assert f"Snapshot of database {dbname(pg_url)}:" in text and "taken 0 min ago" in text
    assert "WARNING" not in text and "CONFIRMED" not in text


def test_missing_role_is_refused_at_plan_time_before_any_snapshot(
    pg_url: str, tmp_path: Path
) -> None:
    role = f"legacy_etl_{next(_roles)}"
    fill(pg_url, 100)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role}")
        conn.execute(f"ALTER TABLE payments OWNER TO {role}")
    storage = LocalStorage(tmp_path / "backups")
    snap = create_snapshot(pg_url, storage)
    assert role in snap.manifest["roles"]
    roles_sql = (tmp_path / "backups" / f"{snap.name}.roles.sql").read_text()
    assert f"CREATE ROLE {role}" in roles_sql and "PASSWORD" not in roles_sql
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the server loses the role
        conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
        conn.execute(f"DROP ROLE {role}")

    with pytest.raises(RestoreRefusedError, match=role) as refused:
        plan_restore(pg_url, storage, snap.name)
    assert "roles.sql" in str(refused.value) and "no_owner" in str(refused.value)
    with pytest.raises(RestoreRefusedError, match=role):
        restore_snapshot(pg_url, storage, snap.name)
    assert [s.name for s in list_snapshots(storage)] == [snap.name]

    options = RestoreOptions(no_owner=True, no_acl=True)
    assert "without their owners and grants" in str(
        plan_restore(pg_url, storage, snap.name, options=options)
    )
    restore_snapshot(pg_url, storage, snap.name, options=options)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM payments").fetchone() == (100,)
