"""Some of the core's tests again, on a PostgreSQL state store (tests/core runs them on
SQLite): the schema and its append-only audit trail, the inbox (on PostgreSQL it shares
the database; row locks, not a file of its own), approvals with their times, requests
acted on once, and an external operation recorded in ``steps.external``.

The environments still use the fake provider: only the state store is PostgreSQL here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.service import Rollbot
from tests.core.test_authz import (
    test_decisions_use_the_time_the_request_was_accepted,
    test_the_same_request_acts_once,
)
from tests.core.test_core import (
    production_database,
    test_checklists_and_resolution_need_confirmation,
    test_expired_approval_no_longer_counts,
    test_idempotency_key_claims_once,
    test_illegal_transition_is_refused_changes_nothing_and_is_audited,
    test_retrying_an_interrupted_restore_needs_a_fresh_approval,
    test_self_approval_in_production_is_refused_and_audited,
    test_walk_to_pitr_records_decisions,
)
from tests.core.test_inbox import (
    test_an_ack_is_one_statement_whatever_the_backlog,
    test_one_row_per_incident_at_a_time_in_order,
    test_recorded_once_and_refused_past_the_high_water_mark,
    test_rows_of_a_dead_worker_are_claimable_at_once,
)
from tests.core.test_provider_neutral import (
    test_a_step_killed_while_polling_resumes_without_sending_again,
)
from tests.core.test_store import (
    test_alembic_upgrades_empty_database_and_is_idempotent,
    test_audit_trail_is_append_only,
    test_migrations_create_exactly_the_models,
)
from tests.fake_provider import write_fake_config

pytestmark = pytest.mark.postgres

__all__ = [
    "production_database",
    "test_a_step_killed_while_polling_resumes_without_sending_again",
    "test_alembic_upgrades_empty_database_and_is_idempotent",
    "test_an_ack_is_one_statement_whatever_the_backlog",
    "test_audit_trail_is_append_only",
    "test_checklists_and_resolution_need_confirmation",
    "test_decisions_use_the_time_the_request_was_accepted",
    "test_expired_approval_no_longer_counts",
    "test_idempotency_key_claims_once",
    "test_illegal_transition_is_refused_changes_nothing_and_is_audited",
    "test_migrations_create_exactly_the_models",
    "test_one_row_per_incident_at_a_time_in_order",
    "test_recorded_once_and_refused_past_the_high_water_mark",
    "test_retrying_an_interrupted_restore_needs_a_fresh_approval",
    "test_rows_of_a_dead_worker_are_claimable_at_once",
    "test_self_approval_in_production_is_refused_and_audited",
    "test_the_same_request_acts_once",
    "test_walk_to_pitr_records_decisions",
]


@pytest.fixture
def state_url(pg_url: str) -> str:
    return pg_url


@pytest.fixture
def settings(tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # The URL carries a password: it goes in ROLLBOT_DATABASE_URL, never the file.
    monkeypatch.setenv("ROLLBOT_DATABASE_URL", state_url)
    return load_settings(write_fake_config(tmp_path, state_url))


def test_these_run_on_a_postgresql_store_with_the_fake_provider(bot: Rollbot) -> None:
    assert bot.store.dialect == "postgresql"
    assert {env.provider for env in bot.settings.environments.values()} == {"fake"}
