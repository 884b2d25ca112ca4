"""The state store: Alembic upgrades an empty database; the audit trail is append-only.

Here on SQLite; the same tests run on PostgreSQL in tests/test_store_on_postgres.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from bot.store import MIGRATIONS, open_store


def newest_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def test_alembic_upgrades_empty_database_and_is_idempotent(state_url: str) -> None:
    store = open_store(state_url)
    assert {
        "incidents",
        "steps",
        "approvals",
        "checklist_ticks",
        "audit_events",
        "idempotency_keys",
        "inbox",
        "issued_tokens",
        "refused_request_counts",
    } <= store.tables()
    store.upgrade()  # second upgrade is a no-op
    with store.engine.connect() as conn:
        version = conn.execute(text("select version_num from alembic_version")).scalar()
    assert version == newest_revision()
    store.dispose()


def test_migrations_create_exactly_the_models(state_url: str) -> None:
    """Alembic's autogenerate finds nothing to add: the migrations and the models agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bot.models import Base

    store = open_store(state_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    store.dispose()
    # SQLite reports a type-less JSON/DateTime drift on some versions; tables and columns must agree.
    structural = [d for d in diff if not (isinstance(d, list) or d[0].startswith("modify"))]
    assert structural == []


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
