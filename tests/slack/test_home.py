"""Slack: the Home tab lists the open incidents, who is on call and the last drill."""

from __future__ import annotations

import json

import pytest

from tests.slack.conftest import REQUESTER
from tests.slack.driver import SlackDriver
from tests.slack.signing import event_body

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_the_home_tab_shows_open_incidents_and_the_last_drill(http_driver: SlackDriver) -> None:
    d = http_driver
    card = d.open_card(REQUESTER, "production home-tab check")
    d.bot.note(None, "rollbot drill", "drill", "passed: 5/5 methods verified (local)")
    before = len(d.fake.calls_to("views.publish"))
    event = {"type": "app_home_opened", "user": REQUESTER, "channel": "D0HOME", "tab": "home"}
    assert d.transport.event(event_body(event, "Ev0HOME0001")).status == 200
    published = d.fake.wait_for(
        lambda f: f.calls_to("views.publish")[before:], what="the Home tab published"
    )
    call = published[-1]
    assert call.args["user_id"] == REQUESTER
    view = call.args["view"]
    text = json.dumps(json.loads(view) if isinstance(view, str) else view)
    assert f"INC-{card.incident_id}" in text
    assert "passed: 5/5 methods verified" in text and "Next drill due" in text
    assert "On call now" in text

    other = {"type": "app_home_opened", "user": REQUESTER, "channel": "D0HOME", "tab": "messages"}
    assert d.transport.event(event_body(other, "Ev0HOME0002")).status == 200
