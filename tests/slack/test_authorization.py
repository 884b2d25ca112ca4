"""Every action id and view the app registers, clicked by someone without the role it needs:
refused (an ephemeral) and audited, over real HTTP, with values exactly as rollbot sealed them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from slack_bolt.util.utils import get_name_for_callable

from bot.inbox import Inbox
from handlers.slack import interactions
from handlers.slack.acks import Acknowledger
from handlers.slack.app import build_app
from handlers.slack.client import make_web_client
from handlers.slack.flows import SIGNING_KEY
from handlers.slack.metadata import ActionValue, ValueSigner, checklist_block_id, source_block_id
from handlers.slack.payloads import classify
from tests.slack.conftest import MALLORY, REQUESTER
from tests.slack.driver import Card, SlackDriver
from tests.slack.fake_slack import BOT_TOKEN
from tests.slack.signing import block_action_payload

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ALL = sorted(interactions.BUTTONS) + [f"view:{v}" for v in interactions.VIEWS]
EXPECTED_REFUSAL = {
    "view:rb_root_cause": "rollbot did not open this form for you",
    # Anyone PagerDuty woke up may acknowledge (declared MEMBER); here nothing was paged.
    "rb_ack": "no open page to acknowledge",
}


def test_clicks_and_views_reach_only_the_table_driven_handlers(http_driver: SlackDriver) -> None:
    """One router answers both transports (the HTTP front door calls it, Socket Mode reaches
    it through Bolt's one middleware): every rollbot button goes to the click handler and
    every rollbot view to the submit handler, and both look the action up in
    ``handlers.slack.interactions`` (so each has a declared requirement)."""
    d = http_driver
    client = make_web_client(BOT_TOKEN, d.fake.url)
    acks = Acknowledger(d.bot.settings, Inbox(d.bot.store), client)
    app = build_app(acks, client=client)
    assert [get_name_for_callable(m.func) for m in app._middleware_list[-1:]] == ["answer"]
    assert app._listeners == []  # nothing of Bolt's own routing is used
    for action_id in [*interactions.BUTTONS, "rb_answer:production", "rb_step:retry"]:
        body = block_action_payload(
            MALLORY, {"action_id": action_id, "type": "button"}, "C1", "1.1"
        )
        assert acks.route(classify(body)) == acks.click, action_id
        assert interactions.button(action_id) is not None, action_id
    assert interactions.button("rb_step:reboot") is None  # no requirement, not acted on
    for callback_id in interactions.VIEWS:
        view = {"id": "V1", "type": "modal", "callback_id": callback_id}
        body = {"type": "view_submission", "user": {"id": MALLORY}, "view": view}
        assert acks.route(classify(body)) == acks.submit, callback_id
    other = {
        "type": "view_submission",
        "user": {"id": MALLORY},
        "view": {**view, "callback_id": "x"},
    }
    assert acks.route(classify(other)) is None


@pytest.fixture(scope="module")
def card(http_driver: SlackDriver) -> Card:
    """A production incident awaiting approval, requested by REQUESTER (MALLORY is nobody here)."""
    d = http_driver
    card = d.open_card(REQUESTER, "production authorization-walk")
    d.wait_card(card, lambda t: "rb_answer:app_broken" in t, "question")
    d.click(REQUESTER, card, "rb_answer:app_broken")
    d.wait_card(card, lambda t: "rb_choose:app_rollback" in t, "recommendation")
    d.click(REQUESTER, card, "rb_choose:app_rollback")
    d.wait_state(card, "method_chosen")
    d.click(REQUESTER, card, "rb_request_approval")
    d.wait_state(card, "awaiting_approval")
    return card


def _sealed_click(d: SlackDriver, card: Card, action_id: str) -> dict[str, Any]:
    """A click exactly as rollbot would have rendered it on this card (sealed, bound)."""
    signer = ValueSigner(d.bot.installation_secret(SIGNING_KEY))
    incident = d.bot.get(card.incident_id)
    if action_id == "rb_tick":
        action = {
            "type": "checkboxes",
            "action_id": "rb_tick:before",
            "block_id": checklist_block_id("before", card.incident_id, signer),
            "selected_options": [{"value": "before.snapshot"}],
        }
    elif action_id.startswith("rb_source:"):
        action = {
            "type": "static_select" if action_id.endswith("snapshot") else "datetimepicker",
            "action_id": action_id,
            "block_id": source_block_id(card.incident_id, signer),
            "selected_option": {"value": "snapshot-20260101-000000"},
            "selected_date_time": 1767225600,
        }
    else:
        if ":" not in action_id:
            action_id = {"rb_answer": "rb_answer:app_broken", "rb_choose": "rb_choose:pitr"}.get(
                action_id, f"{action_id}:go"
            )
        verb, _, arg = action_id.removeprefix("rb_").partition(":")
        step = incident.steps[0].id if verb == "step" else None
        value = ActionValue(card.incident_id, arg=arg, nonce=f"authz-{verb}", step_id=step)
        action = {
            "type": "button",
            "action_id": action_id,
            "block_id": "b",
            "value": value.encode(signer, action_id),
        }
    return block_action_payload(MALLORY, action, card.channel, card.ts, card.thread_ts)


def _view_submission(card: Card) -> dict[str, Any]:
    """MALLORY submits the root-cause form for the incident, with no token rollbot issued him."""
    return {
        "type": "view_submission",
        "team": {"id": "T0TEST"},
        "user": {"id": MALLORY},
        "api_app_id": "A0ROLLBOT",
        "view": {
            "id": "V0MALLORY",
            "hash": "h1",
            "type": "modal",
            "callback_id": "rb_root_cause",
            "private_metadata": json.dumps({"i": card.incident_id, "n": "guessed"}),
            "state": {
                "values": {"root_cause": {"value": {"type": "plain_text_input", "value": "mine"}}}
            },
        },
    }


@pytest.mark.parametrize("interaction", ALL)
def test_an_outsider_is_refused_every_interaction_and_it_is_audited(
    http_driver: SlackDriver, card: Card, interaction: str
) -> None:
    d = http_driver
    before = d.bot.get(card.incident_id)
    refusals_before = len([e for e in d.audit() if e.kind == "refused" and e.actor == MALLORY])
    if interaction.startswith("view:"):
        reply = d.transport.interact(_view_submission(card))
    else:
        reply = d.transport.interact(_sealed_click(d, card, interaction))
    assert reply.status == 200
    if interaction in EXPECTED_REFUSAL:
        expected = EXPECTED_REFUSAL[interaction]
    else:
        action = interactions.button(interaction) or interactions.button(f"{interaction}:go")
        assert action is not None
        expected = f"may not {action.requires.value}"
    told = d.wait_ephemeral(MALLORY, expected)
    assert "nothing was done" in told or "may not" in told
    d.fake.wait_for(
        lambda f: (
            len([e for e in d.audit() if e.kind == "refused" and e.actor == MALLORY])
            > refusals_before
        ),
        what="the refusal in the audit trail",
    )
    after = d.bot.get(card.incident_id)
    assert (after.state, after.plan_hash, len(after.approvals), after.root_cause) == (
        before.state,
        before.plan_hash,
        len(before.approvals),
        before.root_cause,
    )
    assert not [t for t in d.bot.ticks(card.incident_id).values() if t.actor != "rollbot"]
