"""Refusals and exactly-once: forged and stale requests, self-approval, non-approvers,
double clicks, Slack retries, bad input, finished incidents, Slack API failures."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.models import AuditEvent
from tests.slack.conftest import ALICE, BOB, MALLORY, REQUESTER
from tests.slack.driver import Card, HttpTransport, SlackDriver
from tests.slack.fake_slack import CHANNELS
from tests.slack.signing import command_body

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(params=["http", "socket"])
def driver(request: pytest.FixtureRequest) -> SlackDriver:
    return request.getfixturevalue(f"{request.param}_driver")


def awaiting_approval(d: SlackDriver, marker: str, requester: str = REQUESTER) -> Card:
    card = d.open_card(requester, f"production {marker}")
    d.wait_card(card, lambda t: "rb_answer:app_broken" in t, "question")
    d.click(requester, card, "rb_answer:app_broken")
    d.wait_card(card, lambda t: "rb_choose:app_rollback" in t, "recommendation")
    d.click(requester, card, "rb_choose:app_rollback")
    d.wait_state(card, "method_chosen")
    d.click(requester, card, "rb_request_approval")
    d.wait_state(card, "awaiting_approval")
    return card


def refused(d: SlackDriver, incident_id: int | None, actor: str, contains: str) -> bool:
    return any(
        e.kind == "refused" and e.actor == actor and contains in e.message
        for e in d.audit(incident_id)
    )


def started_count(d: SlackDriver, incident_id: int) -> int:
    return sum(
        1 for e in d.audit(incident_id) if e.kind == "step" and " step 1 started" in e.message
    )


def test_forged_signature_and_stale_timestamp_are_refused_and_audited(
    http_driver: SlackDriver,
) -> None:
    """Each is a 401; the door counts them per source per minute with one audit event."""
    d = http_driver
    earlier = {e.id for e in d.audit()}  # the session's other tests were refused at the door too
    counted_before = d.refused_at_the_door()
    body = command_body(REQUESTER, "production forged-request-marker")
    assert d.transport.command(body, forged=True).status == 401
    body = command_body(REQUESTER, "production stale-request-marker")
    assert d.transport.command(body, timestamp=time.time() - 301).status == 401
    assert d.transport.command(body, timestamp=time.time() + 400).status == 401
    for bad in ("not-a-number", "1e9", "", "-1", "9" * 40):
        assert d.transport.command(body, raw_timestamp=bad).status == 401
    counted = d.fake.wait_for(
        lambda f: d.refused_at_the_door() >= counted_before + 8, what="refusal counts"
    )
    assert counted
    assert not any("request-marker" in e.message for e in d.audit())  # no incident opened

    def door() -> list[AuditEvent]:
        return [
            e for e in d.audit() if e.kind == "refused" and "Refused Slack request" in e.message
        ]

    # audited once per source per minute (maybe by an earlier test this minute), after the count
    since = datetime.now(UTC) - timedelta(minutes=2)
    d.fake.wait_for(lambda f: [e for e in door() if e.at >= since], what="the door's audit event")
    assert len([e for e in door() if e.id not in earlier]) <= 2  # not once per request
    assert "forged" not in d.log.read_text() and "marker" not in d.log.read_text()


def test_self_approval_in_production_and_non_approver_are_refused(driver: SlackDriver) -> None:
    d = driver
    # ALICE is an approver; in production not of her own request.
    card = awaiting_approval(d, f"self-approval {type(d.transport).__name__}", ALICE)
    d.click(ALICE, card, "rb_approve")
    assert "cannot approve" in d.wait_ephemeral(ALICE, "cannot approve")
    d.click(MALLORY, card, "rb_approve")
    assert "may not approve" in d.wait_ephemeral(MALLORY, "may not approve")
    d.fake.wait_for(
        lambda f: refused(d, card.incident_id, MALLORY, "may not approve"), what="audit"
    )
    assert refused(d, card.incident_id, ALICE, "cannot approve")
    incident = d.bot.get(card.incident_id)
    assert incident.state == "awaiting_approval" and not incident.approvals


def test_double_click_and_slack_retry_run_once(driver: SlackDriver) -> None:
    d = driver
    card = awaiting_approval(d, f"double-click {type(d.transport).__name__}")
    approve = d.click_payload(ALICE, card, "rb_approve")
    d.transport.interact(approve)
    retry = {"retry_num": 1} if isinstance(d.transport, HttpTransport) else {}
    d.transport.interact(approve, **retry)  # Slack's retry of the same payload
    d.wait_card(card, lambda t: "rb_run:" in t, "run button")
    run = d.click_payload(REQUESTER, card, "rb_run")
    threads = [threading.Thread(target=d.transport.interact, args=(run,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    d.wait_card(card, lambda t: "· verifying" in t or "· failed" in t, "finished run")
    time.sleep(0.5)
    assert started_count(d, card.incident_id) == 1
    incident = d.bot.get(card.incident_id)
    assert len(incident.approvals) == 1
    assert not refused(d, card.incident_id, ALICE, "already approved")  # deduplicated, not refused
    started = d.fake.find(
        "chat.postMessage",
        lambda a: f"INC-{card.incident_id} step 1:" in a.get("text", "") and "…" in a["text"],
    )
    assert len(started) == 1


def test_event_retry_opens_one_incident(driver: SlackDriver) -> None:
    d = driver
    marker = f"mention-retry-{type(d.transport).__name__}"
    event_id = f"Ev{time.monotonic_ns()}"
    assert d.mention(BOB, f"rollback staging {marker}", event_id).status == 200
    assert d.mention(BOB, f"rollback staging {marker}", event_id, retry_num=1).status == 200
    d.wait_card_for(marker)
    time.sleep(1.0)
    opened = [i for i in d.bot.open_incidents() if i.description == marker]
    assert len(opened) == 1 and opened[0].environment == "staging"
    d.mention(BOB, "status", f"Ev{time.monotonic_ns()}")
    status = d.fake.wait_for(
        lambda f: f.find(
            "chat.postMessage",
            lambda a: "Open incidents" in a.get("text", "") and marker in a["text"],
        ),
        what="status",
    )
    assert "slack.com/archives/" in status[-1].args["text"]


def test_unknown_environment_lists_the_valid_ones(driver: SlackDriver) -> None:
    d = driver
    reply = d.rollback(REQUESTER, "prodution typo-marker")
    assert reply.status == 200
    text = reply.json()["text"]
    assert "unknown environment 'prodution'" in text
    assert "development, staging, production" in text
    time.sleep(0.3)
    assert not any("typo-marker" in (i.description or "") for i in d.bot.open_incidents())


def test_click_on_a_cancelled_incident_changes_nothing(driver: SlackDriver) -> None:
    d = driver
    card = d.open_card(REQUESTER, f"production cancel-me {type(d.transport).__name__}")
    d.wait_card(card, lambda t: "rb_answer:data_corruption" in t, "question")
    stale = d.click_payload(REQUESTER, card, "rb_answer:data_corruption")
    d.click(REQUESTER, card, "rb_cancel")
    d.wait_state(card, "cancelled")
    d.transport.interact({**stale, "trigger_id": "other"})
    d.transport.interact(
        {
            **stale,
            "actions": [
                {
                    **stale["actions"][0],
                    "value": stale["actions"][0]["value"].replace('"n":"', '"n":"x'),
                }
            ],
        }
    )
    assert "cancelled" in d.wait_ephemeral(REQUESTER, "it is cancelled")
    assert d.bot.get(card.incident_id).state == "cancelled"


def test_rate_limits_and_server_errors_are_retried(http_driver: SlackDriver) -> None:
    d = http_driver
    d.fake.fail_next("chat.postMessage", 429, {"Retry-After": "1"})
    d.fake.fail_next("chat.postMessage", 503)
    card = d.open_card(REQUESTER, "production retry-after-marker")
    assert card.incident_id
    parents = d.fake.find("chat.postMessage", lambda a: a["channel"] == "#incidents")
    assert len(parents) >= 3  # 429, 503, then the one that landed


def test_thread_is_posted_again_after_slack_was_down(http_driver: SlackDriver) -> None:
    d = http_driver
    for _ in range(4):  # the post and the client's 3 retries of a 5xx: the thread post is lost
        d.fake.fail_next("chat.postMessage", 500, channel="#incidents")
    d.rollback(REQUESTER, "production slack-down-marker")
    incident = d.fake.wait_for(
        lambda f: next(
            (i for i in d.bot.open_incidents() if i.description == "slack-down-marker"), None
        ),
        what="incident in the store",
    )
    d.fake.wait_for(lambda f: not f.faults.get("chat.postMessage"), what="faults used up")
    incidents = ("#incidents", CHANNELS["#incidents"])
    tries = d.fake.find(
        "chat.postMessage",
        lambda a: a["channel"] in incidents and incident.ref in str(a) and not a.get("thread_ts"),
    )
    assert len(tries) == 4  # each answered 500: none of them took
    assert d.bot.get(incident.id).chat_thread is None  # the post failed, the incident did not
    d.mention(REQUESTER, "status", f"Ev{time.monotonic_ns()}")
    card = d.wait_card_for("slack-down-marker")
    assert card.incident_id == incident.id
    # The card is visible in Slack a moment before the store records where it went.
    d.fake.wait_for(
        lambda f: d.bot.get(incident.id).chat_thread == card.thread_ts, what="thread recorded"
    )


def test_oversized_input_is_refused_at_once(http_driver: SlackDriver) -> None:
    """Text over 4,000 characters is answered at the ack; a body over 512 KiB is a 413."""
    d = http_driver
    reply = d.rollback(REQUESTER, "production " + "é" * 5000 + " oversized-marker")
    assert reply.status == 200
    assert "rollbot reads at most 4,000" in reply.json()["text"]
    huge = d.rollback(REQUESTER, "production " + "ü" * 1_000_000)
    assert huge.status == 413 and huge.elapsed < 3.0
    assert not any("oversized-marker" in (i.description or "") for i in d.bot.open_incidents())


def test_mentions_are_answered_only_in_the_configured_channels(driver: SlackDriver) -> None:
    d = driver
    marker = f"mention-elsewhere-{type(d.transport).__name__}"
    d.mention(ALICE, f"rollback staging {marker}", f"Ev{time.monotonic_ns()}", channel="C0RANDOM")
    told = d.wait_ephemeral(ALICE, "I answer mentions in #incidents and #devops-team only")
    assert "/rollback" in told
    assert not [i for i in d.bot.open_incidents() if i.description == marker]
    assert not d.fake.find("chat.postMessage", lambda a: a.get("channel") == "C0RANDOM")
    d.mention(ALICE, "status", f"Ev{time.monotonic_ns()}", channel="C0DEVOPS")
    d.fake.wait_for(
        lambda f: f.find(
            "chat.postMessage",
            lambda a: a.get("channel") == "C0DEVOPS" and "incidents" in a.get("text", "").lower(),
        ),
        what="status answered in #devops-team",
    )
