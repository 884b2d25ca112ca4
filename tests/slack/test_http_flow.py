"""The Slack app served over real HTTP (gunicorn) against the local Slack fake."""

from __future__ import annotations

import pytest

from tests.slack.conftest import ALICE, BOB, REQUESTER
from tests.slack.driver import SlackDriver

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_app_broken_happy_path(http_driver: SlackDriver) -> None:
    d = http_driver
    card = d.open_card(REQUESTER, "production checkout page 500s after deploy-happy")
    d.wait_card(card, lambda t: "Data corruption?" in t, "production question")
    d.click(REQUESTER, card, "rb_answer:app_broken")
    d.wait_card(card, lambda t: "rb_choose:app_rollback" in t, "recommendation")
    d.click(REQUESTER, card, "rb_choose:app_rollback")
    d.wait_state(card, "method_chosen")
    d.click(REQUESTER, card, "rb_request_approval")
    d.wait_state(card, "awaiting_approval")
    d.click(BOB, card, "rb_approve")
    d.wait_card(card, lambda t: "rb_run:" in t, "run button")
    d.click(REQUESTER, card, "rb_run")
    text = d.wait_card(card, lambda t: "verifying" in t or "· failed" in t, "verifying")
    assert "verifying" in text, text
    d.click(ALICE, card, "rb_resolve")
    d.wait_ephemeral(ALICE, "unticked checklist")
