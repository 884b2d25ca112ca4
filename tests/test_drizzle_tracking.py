from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from handlers.cli import main
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.drizzle.tracking import TrackingTableMissingError, migration_status
from tests.test_drizzle_apply import make_folder

pytestmark = pytest.mark.postgres

FILES = {
    "0000_a": 'CREATE TABLE "a" ("id" int);',
    "0001_b": 'ALTER TABLE "a" ADD COLUMN "b" text;',
    "0002_c": 'ALTER TABLE "a" ADD COLUMN "c" text;',
}


def test_clean_status_applied_and_pending(pg_url: str, tmp_path: Path) -> None:
    journal = read_journal(make_folder(tmp_path, FILES))
    apply_migrations(pg_url, journal, upto=1)
    status = migration_status(pg_url, journal)
    assert [e.tag for e in status.applied] == ["0000_a", "0001_b"]
    assert [e.tag for e in status.pending] == ["0002_c"]
    assert status.problems == []


def test_hash_drift_detected(pg_url: str, tmp_path: Path) -> None:
    folder = make_folder(tmp_path, FILES)
    apply_migrations(pg_url, read_journal(folder))
    (folder / "0001_b.sql").write_text('ALTER TABLE "a" ADD COLUMN "b" varchar(10);')
    status = migration_status(pg_url, read_journal(folder))
    assert [d.entry.tag for d in status.drift] == ["0001_b"]
    assert any("hash drift: 0001_b.sql" in p for p in status.problems)


def test_backdated_entry_detected(pg_url: str, tmp_path: Path) -> None:
    # 0001_b was merged later with an older timestamp: drizzle would skip it forever.
    folder = make_folder(tmp_path, FILES, whens={"0000_a": 100, "0001_b": 150, "0002_c": 300})
    only_a_and_c = make_folder(
        tmp_path / "applied",
        {"0000_a": FILES["0000_a"], "0002_c": FILES["0002_c"]},
        whens={"0000_a": 100, "0002_c": 300},
    )
    apply_migrations(pg_url, read_journal(only_a_and_c))
    journal = read_journal(folder)
    assert apply_migrations(pg_url, journal) == []  # drizzle semantics: silently skipped
    status = migration_status(pg_url, journal)
    assert [e.tag for e in status.skipped] == ["0001_b"]
    assert status.pending == []
    assert any("backdated: 0001_b.sql" in p for p in status.problems)


def test_orphan_file_detected(pg_url: str, tmp_path: Path) -> None:
    folder = make_folder(tmp_path, FILES)
    (folder / "0003_forgotten.sql").write_text("ALTER TABLE a ADD COLUMN z int;")
    journal = read_journal(folder)
    apply_migrations(pg_url, journal)
    status = migration_status(pg_url, journal)
    assert [p.name for p in status.orphans] == ["0003_forgotten.sql"]
    assert any("orphan file: 0003_forgotten.sql" in p for p in status.problems)


def test_missing_tracking_table_names_it(pg_url: str, tmp_path: Path) -> None:
    journal = read_journal(make_folder(tmp_path, FILES))
    with pytest.raises(TrackingTableMissingError, match=r"ops\.migs does not exist"):
        migration_status(pg_url, journal, "ops.migs")


def test_cli_status(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_folder(tmp_path, FILES)
    apply_migrations(pg_url, read_journal(folder), upto=0)
    assert (
        main(["migrations", "status", "--database-url", pg_url, "--migrations", str(folder)]) == 0
    )
    out = capsys.readouterr().out
    assert "1 applied, 2 pending" in out and "pending: 0002_c" in out
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA drizzle CASCADE")
    code = main(["migrations", "status", "--database-url", pg_url, "--migrations", str(folder)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "drizzle.__drizzle_migrations does not exist" in err
    password = urlsplit(pg_url).password
    assert password and password not in err


def test_cli_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_folder(tmp_path, FILES)
    assert main(["migrations", "show", "--migrations", str(folder), "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.index("0002_c.sql") < out.index("0001_b.sql") and "0000_a" not in out


def test_cli_status_from_env_config(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_folder(tmp_path / "migrations", FILES)
    apply_migrations(pg_url, read_journal(folder), table="ops.migs")
    config = tmp_path / "rollbot.toml"
    config.write_text(
        "[environments.staging]\n"
        'tier = "staging"\n'
        'database_url_env = "ROLLBOT_TEST_STAGING_DB"\n'
        f'migrations_dir = "{folder}"\n'
        'migrations_table = "ops.migs"\n'
    )
    monkeypatch.setenv("ROLLBOT_TEST_STAGING_DB", pg_url)
    assert main(["--config", str(config), "migrations", "status", "--env", "staging"]) == 0
    assert "tracking table ops.migs: 3 applied, 0 pending" in capsys.readouterr().out
    code = main(["--config", str(config), "migrations", "status", "--env", "nope"])
    assert code == 2 and "unknown environment 'nope'" in capsys.readouterr().err
    monkeypatch.delenv("ROLLBOT_TEST_STAGING_DB")
    assert main(["--config", str(config), "migrations", "status", "--env", "staging"]) == 2
    assert "ROLLBOT_TEST_STAGING_DB is not set" in capsys.readouterr().err
