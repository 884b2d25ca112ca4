"""Reverse drafting, one statement kind at a time, plus a crafted round trip on PostgreSQL."""

from pathlib import Path

import psycopg
import pytest

from bot.errors import ProviderError
from providers.drizzle.apply import apply_sql
from providers.drizzle.journal import read_journal
from providers.drizzle.reverse import (
    ReverseDraft,
    ReverseParseError,
    draft_reverse,
    draft_statements,
    make_column_nullable,
    parse_migration,
    readd_dropped_column,
)
from providers.drizzle.snapshot_model import OldColumn, OldSchema, OldTable, from_catalog
from providers.postgres.catalog import describe_schema, diff_schemas

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "drizzle"
BP = "\n--> statement-breakpoint\n"


def draft_of(sql: str, old: OldSchema | None = None) -> ReverseDraft:
    return draft_statements(parse_migration(sql, "0007_x.sql"), "0007_x.sql", old)


def users_model() -> OldSchema:
    users = OldTable("public", "users")
    users.columns["id"] = OldColumn("id", "integer", True)
    users.columns["email"] = OldColumn("email", "varchar(255)", True)
    users.columns["nick"] = OldColumn("nick", "text", False, "'anon'::text")
    users.columns["org_id"] = OldColumn("org_id", "integer", False)
    users.constraints["users_pkey"] = 'PRIMARY KEY ("id")'
    users.constraints["users_org_fk"] = 'FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id")'
    users.indexes["users_nick_idx"] = (
        'CREATE INDEX "users_nick_idx" ON "public"."users" USING btree ("nick");'
    )
    model = OldSchema("test model", {("public", "users"): users})
    model.enums[("public", "mood")] = ("sad", "happy")
    return model


def test_add_column_becomes_drop_column_with_data_loss() -> None:
    d = draft_of('ALTER TABLE "users" ADD COLUMN "new_column" varchar(100);')
    assert d.statements == ['ALTER TABLE "users" DROP COLUMN "new_column";']
    assert "users.new_column" in d.data_loss[0]


def test_create_table_type_and_reverse_order() -> None:
    d = draft_of(
        "CREATE TYPE \"public\".\"mood\" AS ENUM('sad', 'happy');"
        + BP
        + 'CREATE TABLE "t" ("id" serial PRIMARY KEY NOT NULL, "m" "mood");'
    )
    assert d.statements == ['DROP TABLE "t";', 'DROP TYPE "public"."mood";']
    assert d.sql.count("--> statement-breakpoint") == 1


def test_unique_index_concurrently_keeps_commit_shape() -> None:
    d = draft_of(
        'ALTER TABLE "t" ADD COLUMN "c" int;'
        + BP
        + "COMMIT;"
        + BP
        + 'CREATE UNIQUE INDEX CONCURRENTLY "t_c_idx" ON "t" USING btree ("c");'
    )
    assert d.statements == [
        "COMMIT;",
        'DROP INDEX CONCURRENTLY "t_c_idx";',
        'ALTER TABLE "t" DROP COLUMN "c";',
    ]
    assert any("COMMITs mid-way" in w for w in d.warnings)


def test_plain_index() -> None:
    d = draft_of('CREATE INDEX IF NOT EXISTS "i" ON "s"."t" USING btree ("c");')
    assert d.statements == ['DROP INDEX "s"."i";']


def test_add_constraint_and_old_style_do_wrapper() -> None:
    plain = draft_of(
        'ALTER TABLE "a" ADD CONSTRAINT "a_b_fk" FOREIGN KEY ("b") REFERENCES "public"."b"("id");'
    )
    wrapped = draft_of(
        'DO $$ BEGIN\n ALTER TABLE "a" ADD CONSTRAINT "a_b_fk" FOREIGN KEY ("b") REFERENCES "public"."b"("id")'
        " ON DELETE cascade ON UPDATE no action;\nEXCEPTION\n WHEN duplicate_object THEN null;\nEND $$;"
    )
    assert plain.statements == wrapped.statements == ['ALTER TABLE "a" DROP CONSTRAINT "a_b_fk";']
    assert wrapped.needs_person == []


def test_renames_go_back() -> None:
    d = draft_of(
        'ALTER TABLE "a" RENAME COLUMN "old" TO "new";'
        + BP
        + 'ALTER TABLE "a" RENAME TO "b";'
        + BP
        + 'ALTER TABLE "b" RENAME CONSTRAINT "x" TO "y";'
    )
    assert d.statements == [
        'ALTER TABLE "b" RENAME CONSTRAINT "y" TO "x";',
        'ALTER TABLE "b" RENAME TO "a";',
        'ALTER TABLE "a" RENAME COLUMN "new" TO "old";',
    ]


def test_not_null_both_ways() -> None:
    d = draft_of(
        'ALTER TABLE "u" ALTER COLUMN "a" SET NOT NULL;'
        + BP
        + 'ALTER TABLE "u" ALTER COLUMN "b" DROP NOT NULL;'
    )
    assert d.statements == [
        'ALTER TABLE "u" ALTER COLUMN "b" SET NOT NULL;',
        'ALTER TABLE "u" ALTER COLUMN "a" DROP NOT NULL;',
    ]
    assert any("fails if NULLs" in w for w in d.warnings)


def test_defaults_need_the_old_definition() -> None:
    sql = 'ALTER TABLE "users" ALTER COLUMN "nick" SET DEFAULT \'x\';' + BP
    sql += 'ALTER TABLE "users" ALTER COLUMN "email" SET DEFAULT \'a@b\';' + BP
    sql += 'ALTER TABLE "users" ALTER COLUMN "nick" DROP DEFAULT;'
    d = draft_of(sql, users_model())
    assert d.statements == [
        'ALTER TABLE "users" ALTER COLUMN "nick" SET DEFAULT \'anon\'::text;',
        'ALTER TABLE "users" ALTER COLUMN "email" DROP DEFAULT;',
        'ALTER TABLE "users" ALTER COLUMN "nick" SET DEFAULT \'anon\'::text;',
    ]
    unknown = draft_of(sql)
    assert unknown.statements == []
    assert [n.position for n in unknown.needs_person] == [3, 2, 1]


def test_drop_column_from_old_definition_is_loud() -> None:
    d = draft_of(
        'ALTER TABLE "users" DROP COLUMN "nick";'
        + BP
        + 'ALTER TABLE "users" DROP COLUMN "org_id";',
        users_model(),
    )
    assert d.statements == [
        'ALTER TABLE "public"."users" ADD COLUMN "org_id" integer;',
        'ALTER TABLE "public"."users" ADD CONSTRAINT "users_org_fk" FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id");',
        'ALTER TABLE "public"."users" ADD COLUMN "nick" text DEFAULT \'anon\'::text;',
        'CREATE INDEX "users_nick_idx" ON "public"."users" USING btree ("nick");',
    ]
    assert any(
        n == "the data of column users.nick is gone; a forward-fix re-creates the column empty; "
        "use point-in-time restore to get the data"
        for n in d.data_loss
    )


def test_drop_not_null_column_comes_back_nullable_and_needs_a_person() -> None:
    d = draft_of('ALTER TABLE "users" DROP COLUMN "email";', users_model())
    assert d.statements == ['ALTER TABLE "public"."users" ADD COLUMN "email" varchar(255);']
    assert "re-added as nullable" in d.needs_person[0].reason


def test_drop_column_without_old_definition_names_file_and_position() -> None:
    d = draft_of(
        'ALTER TABLE "a" ADD COLUMN "x" int;' + BP + '\n\nALTER TABLE "a" DROP COLUMN "y";'
    )
    assert d.statements == ['ALTER TABLE "a" DROP COLUMN "x";']
    (need,) = d.needs_person
    assert (need.file, need.position, need.line) == ("0007_x.sql", 2, 5)
    assert str(need).startswith(
        "0007_x.sql statement 2 (line 5): the definition of dropped column a.y is unknown"
    )


def test_alter_type_uses_old_type() -> None:
    d = draft_of(
        'ALTER TABLE "users" ALTER COLUMN "nick" SET DATA TYPE varchar(20);', users_model()
    )
    assert d.statements == [
        'ALTER TABLE "users" ALTER COLUMN "nick" SET DATA TYPE text USING "nick"::text;'
    ]
    assert any("goes back to text" in w for w in d.warnings)


def test_drop_table_index_type_are_recreated() -> None:
    d = draft_of(
        'DROP INDEX "users_nick_idx";'
        + BP
        + 'DROP TABLE "users" CASCADE;'
        + BP
        + 'DROP TYPE "public"."mood";',
        users_model(),
    )
    assert d.statements[0] == "CREATE TYPE \"public\".\"mood\" AS ENUM('sad', 'happy');"
    assert d.statements[1].startswith('CREATE TABLE "public"."users" (\n\t"id" integer NOT NULL,')
    assert (
        'ALTER TABLE "public"."users" ADD CONSTRAINT "users_pkey" PRIMARY KEY ("id");'
        in d.statements
    )
    assert (
        d.statements.count(
            'CREATE INDEX "users_nick_idx" ON "public"."users" USING btree ("nick");'
        )
        == 1
    )
    assert any("the data of table users is gone" in n for n in d.data_loss)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DO $$ BEGIN RAISE NOTICE 'x'; END $$;", "DO block"),
        ('UPDATE "users" SET "nick" = \'x\' WHERE "nick" IS NULL;', "UPDATE backfill"),
        ('INSERT INTO "users" ("id") VALUES (1);', "INSERT"),
        ('DELETE FROM "users" WHERE "id" IS NULL;', "DELETE"),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;", "function"),
        ('ALTER TYPE "public"."mood" ADD VALUE \'meh\';', "cannot remove value 'meh'"),
    ],
)
def test_irreversible_statements_are_listed(sql: str, reason: str) -> None:
    d = draft_of('ALTER TABLE "a" ADD COLUMN "x" int;' + BP + sql)
    assert d.statements == ['ALTER TABLE "a" DROP COLUMN "x";']
    (need,) = d.needs_person
    assert need.position == 2 and reason in need.reason
    assert "NEEDS A PERSON: 0007_x.sql statement 2" in d.render()


def test_unparsable_sql_names_file_statement_and_line() -> None:
    with pytest.raises(
        ReverseParseError, match=r"0007_x\.sql statement 2 \(line 3\): cannot parse"
    ):
        parse_migration("SELECT 1;" + BP + 'ALTER TABLE "a" ADD COLUM "x" int;', "0007_x.sql")


def test_runbook_direct_actions() -> None:
    assert make_column_nullable("users", "new_column").statements == [
        'ALTER TABLE "users" ALTER COLUMN "new_column" DROP NOT NULL;'
    ]
    readd = readd_dropped_column(users_model(), "users", "nick")
    assert (
        readd.statements[0]
        == 'ALTER TABLE "public"."users" ADD COLUMN "nick" text DEFAULT \'anon\'::text;'
    )
    assert "is gone" in readd.data_loss[0]
    with pytest.raises(ProviderError, match=r"no column users\.nope"):
        readd_dropped_column(users_model(), "users", "nope")


def test_newest_of_largest_sample_is_drafted() -> None:
    """Only what is drafted; its speed is benchmarks/reverse_draft.py's (timings flake here)."""
    draft = draft_reverse(read_journal(SAMPLES / "Dokploy__dokploy"))
    assert draft.statements and draft.old_definitions_from == "meta/0184_snapshot.json"


CRAFTED_BEFORE = """
CREATE TYPE "mood" AS ENUM('sad', 'happy');
CREATE TABLE "orgs" ("id" serial PRIMARY KEY, "name" text NOT NULL);
CREATE TABLE "users" (
  "id" serial PRIMARY KEY, "email" varchar(255) NOT NULL DEFAULT '', "nick" text DEFAULT 'anon',
  "age" integer, "org_id" integer REFERENCES "orgs"("id"), "m" "mood", "gone" text NOT NULL DEFAULT 'g',
  "ticket" serial, "ident" bigint GENERATED ALWAYS AS IDENTITY);
CREATE INDEX "users_nick_idx" ON "users" ("nick");
CREATE TABLE "old_log" ("id" bigint PRIMARY KEY, "msg" text);
CREATE UNIQUE INDEX "users_email_uq" ON "users" ("email");
"""
CRAFTED_MIGRATION = BP.join(
    [
        'ALTER TABLE "users" ADD COLUMN "new_column" varchar(100) NOT NULL DEFAULT \'x\';',
        'ALTER TABLE "users" DROP COLUMN "nick";',
        'ALTER TABLE "users" DROP COLUMN "org_id";',
        'ALTER TABLE "users" DROP COLUMN "ticket";',
        'ALTER TABLE "users" DROP COLUMN "ident";',
        'ALTER TABLE "users" ALTER COLUMN "age" SET DATA TYPE bigint;',
        'ALTER TABLE "users" ALTER COLUMN "email" DROP DEFAULT;',
        'ALTER TABLE "users" ALTER COLUMN "age" SET NOT NULL;',
        'ALTER TABLE "users" RENAME COLUMN "gone" TO "kept";',
        'DROP TABLE "old_log";',
        'DROP INDEX "users_email_uq";',
        'ALTER TABLE "users" DROP COLUMN "m";',
        'DROP TYPE "mood";',
        "CREATE TYPE \"public\".\"level\" AS ENUM('a', 'b');",
        'CREATE TABLE "audit" ("id" serial PRIMARY KEY NOT NULL, "lvl" "level", "user_id" integer);',
        'ALTER TABLE "audit" ADD CONSTRAINT "audit_user_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id");',
        "COMMIT;",
        'CREATE INDEX CONCURRENTLY "audit_user_idx" ON "audit" USING btree ("user_id");',
    ]
)


@pytest.mark.postgres
def test_crafted_round_trip_on_postgres(pg_url: str) -> None:
    """Every ADD/DROP/ALTER form, old definitions from the catalog, undone exactly."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(CRAFTED_BEFORE)
        conn.execute("INSERT INTO users (email, age) VALUES ('a@b', 3)")
        before = describe_schema(conn)
    draft = draft_statements(
        parse_migration(CRAFTED_MIGRATION, "0042_crafted.sql"),
        "0042_crafted.sql",
        from_catalog(before),
    )
    assert draft.needs_person == []
    apply_sql(pg_url, CRAFTED_MIGRATION, "migration")
    with psycopg.connect(pg_url) as conn:
        assert diff_schemas(before, describe_schema(conn))  # the migration did change things
    apply_sql(pg_url, draft.sql, "reverse")
    with psycopg.connect(pg_url) as conn:
        assert diff_schemas(before, describe_schema(conn)) == []


def test_enum_add_value_recreates_the_type_from_old_labels() -> None:
    model = users_model()
    model.tables[("public", "users")].columns["m"] = OldColumn(
        "m", '"public"."mood"', True, "'sad'::mood"
    )
    d = draft_of(
        "ALTER TYPE \"public\".\"mood\" ADD VALUE 'meh' BEFORE 'happy';"
        + BP
        + 'ALTER TYPE "public"."mood" ADD VALUE \'ok\';',
        model,
    )
    assert d.statements == [
        'ALTER TABLE "public"."users" ALTER COLUMN "m" DROP DEFAULT;',
        'ALTER TABLE "public"."users" ALTER COLUMN "m" SET DATA TYPE text;',
        'DROP TYPE "public"."mood";',
        "CREATE TYPE \"public\".\"mood\" AS ENUM('sad', 'happy');",
        'ALTER TABLE "public"."users" ALTER COLUMN "m" SET DATA TYPE "public"."mood" USING "m"::"public"."mood";',
        'ALTER TABLE "public"."users" ALTER COLUMN "m" SET DEFAULT \'sad\'::mood;',
    ]
    assert d.needs_person == [] and any("fails if any row holds" in w for w in d.warnings)


@pytest.mark.postgres
def test_enum_round_trip_on_postgres(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TYPE \"Mood\" AS ENUM('sad', 'happy');"
            'CREATE TABLE t (id int, m "Mood" NOT NULL DEFAULT \'sad\', n "Mood");'
            "CREATE INDEX t_m_idx ON t (m); INSERT INTO t VALUES (1, 'happy', NULL);"
        )
        before = describe_schema(conn)
    migration = "ALTER TYPE \"public\".\"Mood\" ADD VALUE 'meh' BEFORE 'happy';"
    draft = draft_statements(parse_migration(migration, "m.sql"), "m.sql", from_catalog(before))
    apply_sql(pg_url, migration)
    apply_sql(pg_url, draft.sql, "reverse")
    with psycopg.connect(pg_url) as conn:
        assert diff_schemas(before, describe_schema(conn)) == []
        assert conn.execute("SELECT m::text FROM t").fetchone() == ("happy",)


def test_guard_wrappers_other_conditions_and_no_ops() -> None:
    wrapped_add = (
        'DO $$ BEGIN ALTER TABLE "users" ADD COLUMN "nick" text; '
        "EXCEPTION WHEN duplicate_column THEN null; END $$;"
    )
    assert draft_of(wrapped_add).statements == ['ALTER TABLE "users" DROP COLUMN "nick";']
    noop = draft_of(wrapped_add, users_model())  # nick existed: the ADD did nothing
    assert noop.statements == [] and any("no-op" in w for w in noop.warnings)
    changed_fk = (
        'DO $$ BEGIN ALTER TABLE "users" DROP CONSTRAINT "users_org_fk"; '
        "EXCEPTION WHEN undefined_object THEN null; END $$;"
        + BP
        + 'DO $$ BEGIN ALTER TABLE "users" ADD CONSTRAINT "users_org_fk" FOREIGN KEY ("org_id") '
        'REFERENCES "public"."orgs"("id") ON DELETE cascade; '
        "EXCEPTION WHEN duplicate_object THEN null; END $$;"
    )
    d = draft_of(changed_fk, users_model())
    assert d.statements == [
        'ALTER TABLE "users" DROP CONSTRAINT "users_org_fk";',
        'ALTER TABLE "public"."users" ADD CONSTRAINT "users_org_fk" FOREIGN KEY ("org_id") '
        'REFERENCES "public"."orgs"("id");',
    ]
    assert d.needs_person == []
