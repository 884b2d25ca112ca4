"""Schema descriptions on a real PostgreSQL: each kind of difference is found, equal is equal."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import psycopg
import pytest

from providers.postgres.catalog import describe_schema, diff_schemas
from providers.postgres.cluster import ThrowawayCluster

pytestmark = pytest.mark.postgres
_counter = itertools.count(1)

BASE = """
CREATE TYPE status AS ENUM ('active', 'disabled');
CREATE TABLE users (
    id serial PRIMARY KEY,
    email varchar(255) NOT NULL,
    plan text DEFAULT 'free',
    status status NOT NULL DEFAULT 'active',
    CONSTRAINT users_email_len CHECK (length(email) > 3)
);
CREATE UNIQUE INDEX users_email_idx ON users (email);
CREATE TABLE posts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id int NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body jsonb
);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();
CREATE VIEW active_users AS SELECT id, email FROM users WHERE status = 'active';
CREATE SCHEMA drizzle;
CREATE TABLE drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at bigint);
"""


@pytest.fixture
def two_dbs(new_database: Callable[[str], str]) -> tuple[str, str]:
    """Two databases built from the same script (different OIDs, same structure)."""
    urls = []
    for _ in range(2):
        url = new_database(f"cat_{next(_counter)}")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(BASE)
        urls.append(url)
    return urls[0], urls[1]


def describe(url: str, **kw):
    with psycopg.connect(url) as conn:
        return describe_schema(conn, **kw)


def change_and_diff(two_dbs: tuple[str, str], ddl: str) -> list[str]:
    before_url, after_url = two_dbs
    with psycopg.connect(after_url, autocommit=True) as conn:
        conn.execute(ddl)
    return diff_schemas(describe(before_url), describe(after_url))


def test_identical_schemas_have_no_difference(two_dbs: tuple[str, str]) -> None:
    a, b = describe(two_dbs[0]), describe(two_dbs[1])
    assert diff_schemas(a, b) == []
    assert a == b
    users = a.table("users")
    assert users.columns["email"].type == "character varying(255)"
    assert not users.columns["email"].nullable
    assert users.columns["plan"].default == "'free'::text"
    assert a.enums["status"] == ("active", "disabled")
    assert "users_email_idx" in users.indexes
    assert a.table("posts").columns["id"].identity == "ALWAYS"
    assert "active_users" in a.views
    assert "users_id_seq" in a.sequences and a.sequences["users_id_seq"].owned_by == "users.id"


def test_tracking_schema_excluded_by_default(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(
        two_dbs,
        "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('x', 1); "
        "ALTER TABLE drizzle.__drizzle_migrations ADD COLUMN extra int",
    )
    assert diff == []
    every = describe(two_dbs[1], schemas=None, exclude=())
    assert "drizzle.__drizzle_migrations" in every.tables
    assert "drizzle.__drizzle_migrations" not in describe(two_dbs[1], schemas=None).tables


def test_added_column(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(two_dbs, "ALTER TABLE users ADD COLUMN new_column varchar(100)")
    assert diff == ["column users.new_column only in after"]


def test_dropped_column_is_only_in_before(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(two_dbs, "ALTER TABLE users DROP COLUMN plan")
    assert diff == ["column users.plan only in before"]


def test_changed_default(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(two_dbs, "ALTER TABLE users ALTER COLUMN plan SET DEFAULT 'pro'")
    assert diff == ["users.plan: default differs (before: 'free'::text, after: 'pro'::text)"]


def test_nullability(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(two_dbs, "ALTER TABLE users ALTER COLUMN email DROP NOT NULL")
    assert diff == ["users.email: nullable differs (before: NOT NULL, after: NULL)"]


def test_type_change(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(two_dbs, "ALTER TABLE posts ALTER COLUMN body TYPE json")
    assert diff == ["posts.body: type differs (before: jsonb, after: json)"]


def test_dropped_index(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(two_dbs, "DROP INDEX users_email_idx")
    assert diff == ["index users.users_email_idx only in before"]


def test_changed_constraint(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(
        two_dbs,
        "ALTER TABLE users DROP CONSTRAINT users_email_len, "
        "ADD CONSTRAINT users_email_len CHECK (length(email) > 5)",
    )
    assert len(diff) == 1
    assert diff[0].startswith("constraint users.users_email_len: definition differs")
    assert "> 3" in diff[0] and "> 5" in diff[0]


def test_changed_foreign_key_action(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(
        two_dbs,
        "ALTER TABLE posts DROP CONSTRAINT posts_user_id_fkey, ADD CONSTRAINT posts_user_id_fkey "
        "FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE RESTRICT",
    )
    assert len(diff) == 1 and "posts_user_id_fkey" in diff[0] and "RESTRICT" in diff[0]


def test_enum_label(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(two_dbs, "ALTER TYPE status ADD VALUE 'banned' BEFORE 'disabled'")
    assert diff == [
        "enum status: labels differs (before: ['active', 'disabled'], "
        "after: ['active', 'banned', 'disabled'])"
    ]


def test_new_table_and_view_change(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(
        two_dbs,
        "CREATE TABLE audit (id int); CREATE OR REPLACE VIEW active_users AS "
        "SELECT id, email FROM users WHERE status <> 'disabled'",
    )
    assert diff[0] == "table audit only in after"
    assert diff[1].startswith("view active_users: definition differs")
    assert len(diff) == 2


def test_column_order_does_not_matter(new_database: Callable[[str], str]) -> None:
    a = new_database(f"cat_{next(_counter)}")
    b = new_database(f"cat_{next(_counter)}")
    with psycopg.connect(a, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int, y text)")
    with psycopg.connect(b, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (y text, x int)")
    assert diff_schemas(describe(a), describe(b)) == []


def test_function_and_trigger_changes(two_dbs: tuple[str, str]) -> None:
    diff = change_and_diff(
        two_dbs,
        "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN NEW.plan := 'x'; RETURN NEW; END $$; DROP TRIGGER users_touch ON users",
    )
    assert diff[0] == "trigger users.users_touch only in before"
    assert diff[1].startswith("function touch(): definition differs")
    assert len(diff) == 2


def test_dump_and_restore_round_trip_is_equal(
    pg_cluster: ThrowawayCluster,
    new_database: Callable[[str], str],
    two_dbs: tuple[str, str],
    tmp_path,
) -> None:
    """The drill relies on this: a restored database describes exactly like the original."""
    import subprocess

    target = new_database(f"cat_{next(_counter)}")
    dump = tmp_path / "db.dump"
    env = {"PGPASSWORD": pg_cluster.password, "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [str(pg_cluster.bindir / "pg_dump"), "-Fc", "-f", str(dump), "-d", two_dbs[0]],
        check=True,
        env=env,
    )
    subprocess.run(
        [str(pg_cluster.bindir / "pg_restore"), "--no-owner", "-d", target, str(dump)],
        check=True,
        env=env,
    )
    assert diff_schemas(describe(two_dbs[0]), describe(target)) == []
    assert describe(target).functions
