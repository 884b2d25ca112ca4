"""Slack: pick the snapshot or the restore time on the card; the plan is drawn up again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.config import load_settings
from providers.postgres.snapshot import create_snapshot
from providers.postgres.steps import storage_of
from tests.slack.conftest import BOB, REQUESTER
from tests.slack.driver import Card, SlackDriver
from tests.slack.signing import block_action_payload

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
JANUARY = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)  # older than any snapshot other tests take
FEBRUARY = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)


def _pick(d: SlackDriver, card: Card, **action: object) -> None:
    kind = "static_select" if "selected_option" in action else "datetimepicker"
    element, block_id = d.element(
        card, f"rb_source:{'snapshot' if kind == 'static_select' else 'time'}"
    )
    payload = block_action_payload(
        REQUESTER,
        {"type": kind, "action_id": element["action_id"], "block_id": block_id, **action},
        card.channel,
        card.ts,
        card.thread_ts,
    )
    assert d.transport.interact(payload).status == 200


def _plan(d: SlackDriver, card: Card) -> str:
    return "\n".join(s.plan_text for s in d.bot.get(card.incident_id).steps)


def test_picking_a_snapshot_or_a_time_replans_and_voids_approvals(
    http_driver: SlackDriver, prod_db: str
) -> None:
    d = http_driver
    env = load_settings(d.config).environment("production")
    january = create_snapshot(prod_db, storage_of(env), now=JANUARY).name
    february = create_snapshot(prod_db, storage_of(env), now=FEBRUARY).name
    newest = create_snapshot(prod_db, storage_of(env)).name
    card = d.open_card(REQUESTER, "production restore-choice walk")
    d.wait_card(card, lambda t: "rb_answer:data_corruption" in t, "question")
    d.click(REQUESTER, card, "rb_answer:data_corruption")
    d.wait_card(card, lambda t: "rb_choose:pitr" in t, "recommendation")
    d.click(REQUESTER, card, "rb_choose:pitr")
    d.wait_state(card, "method_chosen")
    d.click(REQUESTER, card, "rb_request_approval")
    d.wait_state(card, "awaiting_approval")
    d.click(BOB, card, "rb_approve")
    d.wait_card(card, lambda t: "rb_run:" in t, "run button")
    select, _ = d.element(card, "rb_source:snapshot")
    offered = {o["value"] for o in select["options"]}
    assert {january, february, newest} <= offered
    assert select["initial_option"]["value"] == newest  # the default: the newest one

    _pick(d, card, selected_option={"value": january})
    d.wait_card(card, lambda t: f"Restores:* {january}" in t, "the January snapshot planned")
    incident = d.bot.get(card.incident_id)
    assert incident.state == "method_chosen" and january in _plan(d, card)
    assert d.bot.approval_status(incident)[0] == 0  # BOB's approval was of the old plan
    assert "rb_run:" not in str(d.blocks(card))

    between = int(datetime(2026, 2, 15, tzinfo=UTC).timestamp())
    _pick(d, card, selected_date_time=between)
    d.wait_card(card, lambda t: f"Restores:* {february}" in t, "the newest before Feb 15")
    assert "2026-02-15T00:00:00+00:00" in str(d.bot.get(card.incident_id).steps[0].params)

    _pick(d, card, selected_option={"value": "snapshot-20990101-000000"})
    told = d.wait_ephemeral(REQUESTER, "is not a snapshot this incident can restore")
    assert "snapshot-20990101-000000" in told
    assert february in _plan(d, card)
    events = [e.message for e in d.audit(card.incident_id)]
    assert sum("method chosen" in m for m in events) == 3
