"""A card's previews of every method read the target once: one connection, shared."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from bot.config import load_settings
from bot.errors import RollbotError
from bot.service import Rollbot
from bot.shared_reads import SharedReads
from handlers.runtime import register_provider_steps
from providers.postgres import conn as pg_conn
from providers.postgres.snapshot import create_snapshot
from providers.storage import open_storage
from tests.core_fixtures import write_config
from tests.waiting import wait_until


def test_shared_reads_compute_once_keep_refusals_and_close_resources() -> None:
    calls: list[str] = []
    closed: list[str] = []

    class Resource:
        def __enter__(self) -> str:
            return "conn"

        def __exit__(self, *_exc: object) -> None:
            closed.append("conn")

    def refuse() -> None:
        calls.append("refuse")
        raise RollbotError("roles missing")

    with SharedReads() as reads:
        assert reads.value("a", lambda: calls.append("a") or 1) == 1
        assert reads.value("a", lambda: calls.append("a") or 2) == 1
        for _ in range(2):
            with pytest.raises(RollbotError, match="roles missing"):
                reads.value("r", refuse)
        assert reads.resource("db", Resource) == reads.resource("db", Resource) == "conn"
        assert closed == []
    assert calls == ["a", "refuse"]
    assert closed == ["conn"]


def _rollbot_sessions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rollbot'"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.postgres
def test_a_card_previews_all_methods_through_one_connection(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLBOT_TEST_PROD_URL", pg_url)
    settings = load_settings(write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}"))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY)")
    create_snapshot(pg_url, open_storage(settings.environment("production").backups))
    register_provider_steps()
    bot = Rollbot.open(settings)
    opened = bot.open_incident("alice", "bad data", environment="production")
    incident = bot.answer(opened.id, "data_corruption", "alice")
    methods = bot.allowed_methods(incident)

    real_connect = pg_conn.psycopg.connect
    connects: list[str] = []

    def counting_connect(*args: object, **kwargs: object) -> psycopg.Connection:
        connects.append(str(kwargs.get("application_name")))
        return real_connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pg_conn.psycopg, "connect", counting_connect)
    shared = bot.previews(incident, methods)
    assert connects == ["rollbot"], methods
    monkeypatch.setattr(pg_conn.psycopg, "connect", real_connect)

    assert list(shared) == methods
    restores = [m for m, plans in shared.items() if not isinstance(plans, RollbotError)]
    assert len(restores) >= 2, shared  # at least two methods plan against the target
    for method_id, plans in shared.items():
        try:
            alone: list | RollbotError = bot.preview(incident.id, method_id)
        except RollbotError as exc:
            alone = exc
        if isinstance(plans, RollbotError):
            assert str(plans) == str(alone)
        else:
            assert [(p.title, p.data_loss, p.target) for p in plans] == [
                (p.title, p.data_loss, p.target)
                for p in alone  # type: ignore[union-attr]
            ]
    wait_until(lambda: _rollbot_sessions(pg_url) == 0, "the shared connection to close")


@pytest.mark.postgres
def test_a_preview_whose_target_session_is_ended_shows_the_method_unavailable(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore's swap ends every session on the target, the card's own read too: the card
    still renders, with the methods that read through it marked unavailable for now."""
    from providers.postgres import snapshot as pg_snapshot

    monkeypatch.setenv("ROLLBOT_TEST_PROD_URL", pg_url)
    settings = load_settings(write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}"))
    create_snapshot(pg_url, open_storage(settings.environment("production").backups))
    register_provider_steps()
    bot = Rollbot.open(settings)
    incident = bot.answer(
        bot.open_incident("alice", "bad data", environment="production").id,
        "data_corruption",
        "alice",
    )
    methods = bot.allowed_methods(incident)
    real_head = pg_snapshot.migrations_head

    def head_after_the_swap_ended_us(conn: psycopg.Connection, table: str) -> object:
        with psycopg.connect(pg_url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
        return real_head(conn, table)

    monkeypatch.setattr(pg_snapshot, "migrations_head", head_after_the_swap_ended_us)
    shared = bot.previews(incident, methods)
    cut = {m: p for m, p in shared.items() if isinstance(p, RollbotError)}
    assert any("lost the connection" in str(exc) for exc in cut.values()), shared

    monkeypatch.setattr(pg_snapshot, "migrations_head", real_head)
    again = bot.previews(incident, methods)
    assert not any("lost the connection" in str(p) for p in again.values()), again
    wait_until(lambda: _rollbot_sessions(pg_url) == 0, "the cut and the new connection to close")
