"""Slack: "Migration hangs" is offered in every branch and ends a real blocking session."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.slack.conftest import BOB, REQUESTER
from tests.slack.driver import SlackDriver
from tests.waiting import DEADLINE_SECONDS, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _blocked_alter(url: str) -> tuple[psycopg.Connection, threading.Event, list[BaseException]]:
    """A session holding a row lock in an open transaction, and an ALTER waiting for it."""
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS hang_orders")
        setup.execute("CREATE TABLE hang_orders (id int PRIMARY KEY)")
        setup.execute("INSERT INTO hang_orders SELECT generate_series(1, 5)")
    holder = psycopg.connect(url, application_name="app-worker")
    holder.execute("INSERT INTO hang_orders VALUES (6)")  # left open
    done, errors = threading.Event(), []

    def migrate() -> None:
        try:
            with psycopg.connect(url, autocommit=True, application_name="migrate") as conn:
                conn.execute("ALTER TABLE hang_orders ADD COLUMN shipped boolean")
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=migrate, daemon=True).start()

    def waiting() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'migrate' "
                "AND cardinality(pg_blocking_pids(pid)) > 0"
            ).fetchone()
        return bool(row and row[0])

    wait_until(waiting, "the ALTER waiting for the holder's lock")
    return holder, done, errors


def test_migration_hangs_is_offered_and_ends_the_blocker(
    http_driver: SlackDriver, prod_db: str
) -> None:
    d = http_driver
    holder, altered, errors = _blocked_alter(prod_db)
    try:
        card = d.open_card(REQUESTER, "production migration hangs on hang_orders")
        d.wait_card(card, lambda t: "rb_answer:schema_only" in t, "question")
        d.click(REQUESTER, card, "rb_answer:schema_only")
        text = d.wait_card(card, lambda t: "rb_choose:stuck_migration" in t, "scenario action")
        assert "Migration hangs/times out" in text
        assert f"pg_terminate_backend({holder.info.backend_pid})" in text  # the tree, before
        d.click(REQUESTER, card, "rb_choose:stuck_migration")
        d.wait_state(card, "method_chosen")
        d.click(REQUESTER, card, "rb_request_approval")
        d.wait_state(card, "awaiting_approval")
        d.click(BOB, card, "rb_approve")
        d.wait_card(card, lambda t: "rb_run:" in t, "run button")
        d.click(REQUESTER, card, "rb_run")
        assert altered.wait(DEADLINE_SECONDS), "the ALTER is still blocked"
        assert errors == []
        d.wait_card(card, lambda t: "· verifying" in t or "· failed" in t, "the step's end")
        with psycopg.connect(prod_db) as conn:
            columns = conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'hang_orders' ORDER BY ordinal_position"
            ).fetchall()
        assert [c[0] for c in columns] == ["id", "shipped"]
    finally:
        holder.close()
        altered.wait(DEADLINE_SECONDS)
