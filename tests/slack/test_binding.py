"""A click acts on the incident whose message it was clicked on, and only if its value agrees:
a value naming another incident, a value edited on its way back, or a modal's metadata
naming another incident is refused (an ephemeral), audited, and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.slack.conftest import ALICE, REQUESTER
from tests.slack.driver import Card, SlackDriver

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _awaiting(d: SlackDriver, marker: str) -> Card:
    card = d.open_card(REQUESTER, f"production {marker}")
    d.wait_card(card, lambda t: "rb_answer:app_broken" in t, "question")
    d.click(REQUESTER, card, "rb_answer:app_broken")
    d.wait_card(card, lambda t: "rb_choose:app_rollback" in t, "recommendation")
    d.click(REQUESTER, card, "rb_choose:app_rollback")
    d.wait_state(card, "method_chosen")
    d.click(REQUESTER, card, "rb_request_approval")
    d.wait_state(card, "awaiting_approval")
    return card


def _on(payload: dict[str, Any], card: Card) -> dict[str, Any]:
    """The same click, as if made on ``card``'s message."""
    return {
        **payload,
        "channel": {"id": card.channel, "name": "incidents"},
        "container": {"type": "message", "message_ts": card.ts, "channel_id": card.channel},
        "message": {"ts": card.ts, "thread_ts": card.thread_ts, "type": "message"},
    }


def _with_value(payload: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any]:
    action = payload["actions"][0]
    value = {**json.loads(action["value"]), **edit}
    return {**payload, "actions": [{**action, "value": json.dumps(value)}]}


def _refusals(d: SlackDriver, actor: str) -> int:
    return sum(1 for e in d.audit() if e.kind == "refused" and e.actor == actor)


def _refused(d: SlackDriver, actor: str, before: int, told: str) -> None:
    d.wait_ephemeral(actor, told)
    d.fake.wait_for(lambda f: _refusals(d, actor) > before, what="the audited refusal")


def test_a_value_naming_another_incident_is_refused(http_driver: SlackDriver) -> None:
    d = http_driver
    a, b = _awaiting(d, "binding-a"), _awaiting(d, "binding-b")
    approve_b = d.click_payload(ALICE, b, "rb_approve")
    cancel_b = d.click_payload(REQUESTER, b, "rb_cancel")

    before = _refusals(d, ALICE)
    d.transport.interact(_on(approve_b, a))  # B's sealed value, clicked on A's card
    _refused(d, ALICE, before, f"names INC-{b.incident_id} but it is on INC-{a.incident_id}")
    before = _refusals(d, REQUESTER)
    d.transport.interact(_on(cancel_b, a))
    _refused(d, REQUESTER, before, f"but it is on INC-{a.incident_id}'s card")
    before = _refusals(d, ALICE)
    d.transport.interact(_with_value(d.click_payload(ALICE, a, "rb_approve"), {"i": b.incident_id}))
    _refused(d, ALICE, before, "changed on its way back")

    for card in (a, b):
        incident = d.bot.get(card.incident_id)
        assert incident.state == "awaiting_approval" and not incident.approvals
    mismatch = [e for e in d.audit(a.incident_id) if e.kind == "refused"]
    assert any(e.data.get("claimed_incident") == b.incident_id for e in mismatch)


def test_modal_metadata_naming_another_incident_is_refused(http_driver: SlackDriver) -> None:
    d = http_driver
    a, b = _awaiting(d, "modal-a"), _awaiting(d, "modal-b")
    opened = len(d.fake.calls_to("views.open"))
    d.click(REQUESTER, a, "rb_root_cause")
    view = d.fake.wait_for(lambda f: f.calls_to("views.open")[opened:], what="the root-cause form")[
        -1
    ].args["view"]
    meta = json.loads(view["private_metadata"])
    assert meta["i"] == a.incident_id and meta["n"]  # a token issued to REQUESTER for A

    def submit(metadata: dict[str, Any], user: str = REQUESTER) -> None:
        values = {"root_cause": {"value": {"type": "plain_text_input", "value": "moved"}}}
        body = {
            "type": "view_submission",
            "user": {"id": user},
            "view": {
                **view,
                "id": f"V{len(d.fake.calls)}",
                "hash": "h",
                "private_metadata": json.dumps(metadata),
                "state": {"values": values},
            },
        }
        assert d.transport.interact(body).status == 200

    before = _refusals(d, REQUESTER)
    submit({**meta, "i": b.incident_id})  # A's token, B's id
    _refused(d, REQUESTER, before, "rollbot did not open this form for you")
    before = _refusals(d, ALICE)
    submit(meta, ALICE)  # REQUESTER's token, submitted by someone else
    _refused(d, ALICE, before, "rollbot did not open this form for you")
    assert d.bot.get(a.incident_id).root_cause is None
    assert d.bot.get(b.incident_id).root_cause is None

    submit(meta)  # the form as rollbot opened it
    d.fake.wait_for(lambda f: d.bot.get(a.incident_id).root_cause == "moved", what="root cause")
