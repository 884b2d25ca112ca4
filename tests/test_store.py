"""The state store: Alembic upgrades an empty database; the audit trail is append-only."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from bot.store import open_store

pytestmark = pytest.mark.postgres


def test_alembic_upgrades_empty_database_and_is_idempotent(state_url: str) -> None:
    store = open_store(state_url)
    assert {
        "incidents",
        "steps",
        "approvals",
        "checklist_ticks",
        "audit_events",
        "idempotency_keys",
    } <= store.tables()
    store.upgrade()  # second upgrade is a no-op
    with store.engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == "0001"
    store.dispose()


def test_audit_trail_is_append_only(state_url: str) -> None:
    store = open_store(state_url)
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "insert into audit_events (actor, kind, message, data, at) "
                "values ('alice', 'note', 'something happened', '{}', CURRENT_TIMESTAMP)"
            )
        )
    with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("update audit_events set message = 'rewritten'"))
    with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("delete from audit_events"))
    with store.engine.connect() as conn:
        assert (
            conn.execute(text("select message from audit_events")).scalar() == "something happened"
        )
    store.dispose()
