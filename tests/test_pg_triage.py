"""Triage on a real PostgreSQL: a lock holder blocking an ALTER TABLE, found and ended."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from bot.errors import RollbotError
from providers.postgres.triage import (
    ActivityListing,
    activity,
    cancel,
    list_activity,
    plan,
    terminate,
)
from tests.waiting import DEADLINE_SECONDS, wait_until

pytestmark = pytest.mark.postgres


@dataclass
class BlockedAlter:
    """An ``ALTER TABLE`` running in a thread, blocked by ``holder``'s lock."""

    holder: psycopg.Connection
    holder_pid: int
    thread: threading.Thread
    error: list[BaseException] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


def wait_for_block(url: str, holder_pid: int) -> ActivityListing:
    """The first listing in which something waits for ``holder_pid``."""

    def listing_with_block() -> ActivityListing | None:
        listing = activity(url)
        return listing if any(holder_pid in b.blocked_by for b in listing.backends) else None

    return wait_until(listing_with_block, "the ALTER TABLE to show up as blocked")


@pytest.fixture
def blocked_alter(pg_url: str) -> Iterator[BlockedAlter]:
    with psycopg.connect(pg_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
    holder = psycopg.connect(pg_url, application_name="app-worker")
    holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # transaction left open
    holder_pid = holder.info.backend_pid
    state = BlockedAlter(holder, holder_pid, threading.Thread())

    def run_alter() -> None:
        try:
            with psycopg.connect(pg_url, autocommit=True, application_name="migrate") as conn:
                conn.execute("ALTER TABLE t ADD COLUMN new_column varchar(100)")
        except BaseException as exc:
            state.error.append(exc)
        finally:
            state.done.set()

    state.thread = threading.Thread(target=run_alter, daemon=True)
    state.thread.start()
    yield state
    holder.close()
    state.thread.join(timeout=DEADLINE_SECONDS)


def columns(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 't' "
            "ORDER BY ordinal_position"
        ).fetchall()
    return [r[0] for r in rows]


def test_finds_blocker_and_terminate_lets_alter_finish(
    pg_url: str, blocked_alter: BlockedAlter
) -> None:
    listing = wait_for_block(pg_url, blocked_alter.holder_pid)
    holder = listing.get(blocked_alter.holder_pid)
    assert holder is not None
    assert holder.state == "idle in transaction"
    assert holder.application == "app-worker"
    alter = next(b for b in listing.backends if b.query.startswith("ALTER TABLE"))
    assert alter.blocked_by == (blocked_alter.holder_pid,)
    assert alter.wait_event == "Lock:relation"
    assert any(
        not lock.granted and lock.target == "t" and lock.mode == "AccessExclusiveLock"
        for lock in alter.locks
    )
    assert any(lock.granted and lock.target == "t" for lock in holder.locks)
    assert [b.pid for b in listing.roots] == [blocked_alter.holder_pid]
    tree = listing.tree_lines()
    assert tree[0].startswith(f"pid {blocked_alter.holder_pid} [idle in transaction")
    assert any(line.strip().startswith(f"└─ pid {alter.pid}") for line in tree)
    assert tree[1].strip() == "holds AccessExclusiveLock on t"
    assert "ClientRead" not in tree[0]
    assert listing.own_pid not in listing.pids

    preview = plan(listing, blocked_alter.holder_pid, "terminate")
    assert "ROLLED BACK" in preview and f"pid {alter.pid}" in preview
    assert "no effect" in plan(listing, blocked_alter.holder_pid, "cancel")

    result = terminate(pg_url, str(blocked_alter.holder_pid), listing)
    assert result.confirmed and result.signalled, result
    assert blocked_alter.done.wait(DEADLINE_SECONDS), "ALTER TABLE still blocked after terminate"
    assert blocked_alter.error == []
    assert columns(pg_url) == ["id", "new_column"]
    assert blocked_alter.holder_pid not in activity(pg_url).pids


def test_cancel_stops_the_blocked_alter(pg_url: str, blocked_alter: BlockedAlter) -> None:
    listing = wait_for_block(pg_url, blocked_alter.holder_pid)
    alter = next(b for b in listing.backends if b.query.startswith("ALTER TABLE"))
    assert "running statement is cancelled" in plan(listing, alter.pid, "cancel")
    result = cancel(pg_url, alter.pid, listing)
    assert result.confirmed, result
    assert blocked_alter.done.wait(DEADLINE_SECONDS)
    assert isinstance(blocked_alter.error[0], psycopg.errors.QueryCanceled)
    assert columns(pg_url) == ["id"]
    # The holder is untouched.
    assert blocked_alter.holder.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_cancel_of_idle_transaction_is_not_confirmed(
    pg_url: str, blocked_alter: BlockedAlter
) -> None:
    listing = wait_for_block(pg_url, blocked_alter.holder_pid)
    result = cancel(pg_url, blocked_alter.holder_pid, listing, timeout=0.5)
    assert result.signalled and not result.confirmed
    assert not blocked_alter.done.is_set()


@pytest.mark.parametrize("bad", ["abc", "12; SELECT 1", "-1", "1.5", "", True, None, 3.0])
def test_refuses_non_integers(pg_url: str, blocked_alter: BlockedAlter, bad: object) -> None:
    listing = wait_for_block(pg_url, blocked_alter.holder_pid)
    with pytest.raises(RollbotError, match="valid PIDs: ") as info:
        terminate(pg_url, bad, listing)
    assert str(blocked_alter.holder_pid) in str(info.value)
    assert not blocked_alter.done.is_set()


def test_refuses_pid_not_in_listing(pg_url: str, blocked_alter: BlockedAlter) -> None:
    listing = wait_for_block(pg_url, blocked_alter.holder_pid)
    with pytest.raises(RollbotError, match="not in the current listing; valid PIDs: "):
        terminate(pg_url, 999_999, listing)
    # A real backend of the server that is idle (so not listed) is refused too.
    with psycopg.connect(pg_url) as idle:
        with pytest.raises(RollbotError, match="not in the current listing"):
            terminate(pg_url, idle.info.backend_pid, listing)
        assert idle.execute("SELECT 1").fetchone() == (1,)
    assert not blocked_alter.done.is_set()


def test_refuses_own_backend(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        listing = list_activity(conn)
        with pytest.raises(RollbotError, match="rollbot's own connection"):
            terminate(pg_url, conn.info.backend_pid, listing)
        with pytest.raises(RollbotError, match="rollbot's own connection"):
            plan(listing, listing.own_pid, "cancel")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_refuses_reused_pid(pg_url: str, blocked_alter: BlockedAlter) -> None:
    listing = wait_for_block(pg_url, blocked_alter.holder_pid)
    holder = listing.get(blocked_alter.holder_pid)
    assert holder is not None
    from dataclasses import replace
    from datetime import timedelta

    stale = replace(
        listing,
        backends=tuple(
            replace(b, backend_start=b.backend_start - timedelta(hours=1))
            if b.pid == holder.pid
            else b
            for b in listing.backends
        ),
    )
    with pytest.raises(RollbotError, match="another session than the one listed"):
        terminate(pg_url, holder.pid, stale)
    assert not blocked_alter.done.is_set()


def test_password_literals_are_masked(pg_url: str) -> None:
    with psycopg.connect(pg_url) as other:
        other.execute("SELECT 1 /* ALTER ROLE x PASSWORD 'hunter2secret' */")
        # idle in transaction with that text as its last query
        listing = activity(pg_url)
    texts = " ".join(b.query for b in listing.backends)
    assert "PASSWORD '***'" in texts
    assert "hunter2secret" not in texts


# --- the `rollbot triage` command ------------------------------------------------------------


@pytest.fixture
def triage_config(tmp_path, monkeypatch: pytest.MonkeyPatch, pg_url: str):
    path = tmp_path / "rollbot.toml"
    path.write_text(
        "[environments.dev]\n"
        'tier = "development"\n'
        'database_url_env = "TRIAGE_DEV_URL"\n'
        "[environments.prod]\n"
        'tier = "production"\n'
        'database_url_env = "TRIAGE_PROD_URL"\n'
    )
    monkeypatch.setenv("TRIAGE_DEV_URL", pg_url)
    monkeypatch.setenv("TRIAGE_PROD_URL", pg_url)
    return str(path)


def test_cli_lists_and_terminates_on_development(
    pg_cluster, pg_url: str, blocked_alter: BlockedAlter, triage_config: str, capsys
) -> None:
    from handlers.cli import main

    wait_for_block(pg_url, blocked_alter.holder_pid)
    assert main(["--config", triage_config, "triage", "--env", "dev"]) == 0
    out = capsys.readouterr().out
    assert "environment dev (development)" in out
    assert f"pid {blocked_alter.holder_pid} [idle in transaction" in out
    assert "blocking tree" in out and "└─ pid" in out
    assert pg_cluster.password not in out

    code = main(
        [
            "--config",
            triage_config,
            "triage",
            "--env",
            "dev",
            "--terminate",
            str(blocked_alter.holder_pid),
            "--yes",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ROLLED BACK" in out and "backend is gone" in out
    assert blocked_alter.done.wait(DEADLINE_SECONDS)
    assert columns(pg_url) == ["id", "new_column"]
    assert pg_cluster.password not in out


def test_cli_confirmation_prompt_aborts(
    pg_url: str, blocked_alter: BlockedAlter, triage_config: str, capsys, monkeypatch
) -> None:
    from handlers.cli import main

    wait_for_block(pg_url, blocked_alter.holder_pid)
    monkeypatch.setattr("builtins.input", lambda prompt="": "no")
    pid = str(blocked_alter.holder_pid)
    assert main(["--config", triage_config, "triage", "--env", "dev", "--terminate", pid]) == 1
    assert "aborted; nothing was done" in capsys.readouterr().out
    assert blocked_alter.holder_pid in activity(pg_url).pids
    monkeypatch.setattr("builtins.input", lambda prompt="": pid)
    assert main(["--config", triage_config, "triage", "--env", "dev", "--terminate", pid]) == 0
    assert blocked_alter.done.wait(DEADLINE_SECONDS)


def test_cli_refuses_production_and_bad_pids(
    pg_url: str, blocked_alter: BlockedAlter, triage_config: str, capsys
) -> None:
    from handlers.cli import main

    wait_for_block(pg_url, blocked_alter.holder_pid)
    pid = str(blocked_alter.holder_pid)
    argv = ["--config", triage_config, "triage", "--env", "prod", "--terminate", pid, "--yes"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "production" in err and "incident" in err
    assert blocked_alter.holder_pid in activity(pg_url).pids

    assert main(["--config", triage_config, "triage", "--env", "dev", "--cancel", "abc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rollbot: PID 'abc' is not an integer; valid PIDs:")
    assert "Traceback" not in err
    assert main(["--config", triage_config, "triage", "--env", "nope"]) == 2
    assert "unknown environment 'nope'" in capsys.readouterr().err
    assert not blocked_alter.done.is_set()
