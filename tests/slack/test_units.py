"""In-process pieces of the Slack app: debouncing, group cache, button values, the card."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.config import load_settings
from bot.errors import RollbotError
from bot.inbox import Inbox
from bot.models import InboxItem
from bot.service import Rollbot
from bot.steps import StepResult
from handlers.runtime import register_provider_steps
from handlers.slack import blocks
from handlers.slack.acks import ACK_FAILED, Acknowledger
from handlers.slack.client import SlackGroupDirectory, make_web_client
from handlers.slack.flows import parse_rollback_text
from handlers.slack.metadata import ActionValue, idempotency_key
from handlers.slack.payloads import classify
from handlers.slack.poster import SlackPoster
from handlers.slack.progress import Debouncer, SlackProgressSink
from tests.slack.conftest import ALICE, BOB, DBA_GROUP, REQUESTER, write_slack_config
from tests.slack.fake_slack import BOT_TOKEN, FakeSlack, _block_problems
from tests.slack.signing import block_action_payload, command_body


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    f = FakeSlack().start()
    f.groups[DBA_GROUP] = [BOB]
    yield f
    f.stop()


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Rollbot]:
    register_provider_steps()
    bot = Rollbot.open(load_settings(write_slack_config(tmp_path)))
    yield bot
    bot.store.dispose()


def test_debouncer_collapses_a_burst_and_keeps_the_newest() -> None:
    sent: list[int] = []
    lock = threading.Lock()
    debouncer = Debouncer(interval=0.3)

    def sender(n: int):
        def send() -> None:
            with lock:
                sent.append(n)

        return send

    for n in range(100):
        debouncer.submit("msg", sender(n))
        time.sleep(0.002)
    time.sleep(0.8)
    assert sent[0] == 0 and sent[-1] == 99
    assert len(sent) <= 3
    debouncer.submit("msg", sender(100))  # pending behind the interval
    debouncer.flush("msg", sender(999))
    time.sleep(0.5)
    assert sent[-1] == 999 and 100 not in sent[3:]


def test_progress_sink_debounces_chat_update(fake: FakeSlack, core: Rollbot) -> None:
    incident = core.open_incident(REQUESTER, "sink", "production")
    incident = core.answer(incident.id, "app_broken", REQUESTER)
    incident = core.choose_method(incident.id, "app_rollback", REQUESTER)
    step = incident.steps[0]
    poster = SlackPoster(make_web_client(BOT_TOKEN, fake.url))
    sink = SlackProgressSink(poster, "C0INCIDENTS", "1.000001", debouncer=Debouncer(0.5))
    sink.step_started(incident, step)
    for n in range(200):
        sink.step_progress(incident, step, f"restore: {n} MB")
    sink.step_finished(incident, step, StepResult(True, "all done", {"lines": ["row counts ok"]}))
    time.sleep(0.7)
    updates = fake.calls_to("chat.update")
    assert 1 <= len(updates) <= 3
    assert "all done" in updates[-1].args["text"] and "row counts ok" in updates[-1].args["text"]


def test_group_directory_is_cached_briefly(fake: FakeSlack) -> None:
    now = [0.0]
    directory = SlackGroupDirectory(make_web_client(BOT_TOKEN, fake.url), 60, lambda: now[0])
    assert directory.members(DBA_GROUP) == {BOB}
    fake.groups[DBA_GROUP] = [BOB, ALICE]
    assert directory.members(DBA_GROUP) == {BOB}
    assert len(fake.calls_to("usergroups.users.list")) == 1
    now[0] = 61.0
    assert directory.members(DBA_GROUP) == {BOB, ALICE}


def test_action_values_round_trip_and_bad_ones_are_refused() -> None:
    value = ActionValue(7, arg="pitr", nonce="abc", step_id=3, confirm=True)
    assert ActionValue.decode(value.encode()) == value
    assert idempotency_key(value, "U1", "rb_run:go") != idempotency_key(value, "U2", "rb_run:go")
    for bad in ("", "{}", "not json", '{"i": "x"}'):
        with pytest.raises(RollbotError, match="not rollbot's"):
            ActionValue.decode(bad)


def test_rollback_text_parsing(core: Rollbot) -> None:
    settings = core.settings
    assert parse_rollback_text("", settings) == (None, "")
    assert parse_rollback_text("production users.new_column breaks login", settings) == (
        "production",
        "users.new_column breaks login",
    )
    with pytest.raises(RollbotError, match="valid environments: development, staging, production"):
        parse_rollback_text("prod oops", settings)


def _card_ok(core: Rollbot, incident_id: int, **view_kw: object) -> str:
    view = blocks.CardView(incident=core.get(incident_id), nonce="n1", **view_kw)  # type: ignore[arg-type]
    _text, card = blocks.incident_card(view)
    assert _block_problems(card) == []
    return str(card)


def test_card_is_valid_block_kit_in_every_state(core: Rollbot) -> None:
    from bot.runbook import RUNBOOK

    inc = core.open_incident(REQUESTER, "card", None)
    assert "rb_answer:production" in _card_ok(core, inc.id, question=RUNBOOK.node("environment"))
    core.answer(inc.id, "production", REQUESTER)
    core.answer(inc.id, "data_corruption", REQUESTER)
    option = blocks.MethodOption("pitr", "PITR", "when", True, unavailable="no snapshot")
    assert "not available here" in _card_ok(core, inc.id, options=[option])
    core.cancel(inc.id, REQUESTER)
    assert "rb_" not in _card_ok(core, inc.id)  # closed: no buttons left

    inc = core.open_incident(REQUESTER, "card2", "production")
    core.answer(inc.id, "app_broken", REQUESTER)
    core.choose_method(inc.id, "app_rollback", REQUESTER)
    assert "rb_request_approval" in _card_ok(core, inc.id, approvals_needed=1)
    core.request_approval(inc.id, REQUESTER)
    assert "rb_run" not in _card_ok(core, inc.id, approvals_needed=1)
    core.approve(inc.id, ALICE)
    assert "rb_run" in _card_ok(core, inc.id, approvals_needed=1, approvals_valid=1)


def _jobs(fake: FakeSlack, tmp_path: Path, clock: object) -> tuple[Rollbot, object, object]:
    from bot.executor import Executor
    from bot.inbox import Inbox
    from handlers.runtime import Runtime
    from handlers.slack.flows import IncidentFlows
    from handlers.slack.jobs import SlackJobs

    register_provider_steps()
    settings = load_settings(write_slack_config(tmp_path))
    bot = Rollbot.open(settings, clock=clock)  # type: ignore[arg-type]
    runtime = Runtime(settings, bot, Executor(bot))
    poster = SlackPoster(make_web_client(BOT_TOKEN, fake.url))
    flows = IncidentFlows(runtime, poster)
    return bot, SlackJobs(runtime, flows, poster, clock=clock), Inbox(bot.store, clock=clock)  # type: ignore[arg-type]


def _click(
    bot: Rollbot, jobs: object, inbox: object, user: str, incident_id: int, verb: str
) -> str:
    """Record a click on the incident's card the way the acknowledging side does; handle it."""
    from bot.inbox import NewRequest

    incident = bot.get(incident_id)
    action_id = f"rb_{verb}:go"
    value = ActionValue(incident_id, nonce=f"n{verb}").encode(jobs.flows.signer, action_id)  # type: ignore[attr-defined]
    payload = {
        "action_id": action_id,
        "value": value,
        "channel": incident.chat_channel,
        "message_ts": incident.chat_message,
        "thread_ts": incident.chat_thread,
    }
    key = f"slack:click:{verb}:{user}:{time.monotonic_ns()}"
    assert inbox.accept(NewRequest(key, "slack", verb, user, incident_id, payload)).recorded  # type: ignore[attr-defined]
    return _handle_next(jobs, inbox)


def _handle_next(jobs: object, inbox: object) -> str:
    """What the worker does with the next row: claim, handle, finish."""
    item = inbox.claim("test-worker")  # type: ignore[attr-defined]
    assert item is not None
    status = jobs.handle(item)  # type: ignore[attr-defined]
    inbox.finish(item.id, status)  # type: ignore[attr-defined]
    return str(status)


def test_a_slow_queue_decides_at_the_accepted_time_within_a_bound(
    fake: FakeSlack, tmp_path: Path
) -> None:
    from bot.request_context import MAX_WAIT
    from tests.core_fixtures import Clock

    clock = Clock()
    bot, jobs, inbox = _jobs(fake, tmp_path, clock)
    flows = jobs.flows  # type: ignore[attr-defined]
    incident = flows.open(REQUESTER, "production", "slow queue", source="slack")
    flows.answer(REQUESTER, incident.id, "app_broken")
    flows.choose(REQUESTER, incident.id, "app_rollback")
    flows.request_approval(REQUESTER, incident.id)
    flows.approve(ALICE, incident.id)

    # Run clicked at 29 minutes, handled at 31: the approval (30 minutes) was valid when clicked.
    clock.advance(minutes=29)
    from bot.inbox import NewRequest

    card = bot.get(incident.id)
    value = ActionValue(incident.id, nonce="nrun").encode(flows.signer, "rb_run:go")
    payload = _card_click(card, "rb_run:go", value)
    assert inbox.accept(
        NewRequest("slack:click:late-run", "slack", "run", REQUESTER, incident.id, payload)
    ).recorded
    clock.advance(minutes=2)
    assert _handle_next(jobs, inbox) == "done"
    assert bot.get(incident.id).state == "running"

    # A click that waited longer than the bound is not acted on; the person is told.
    other = flows.open(REQUESTER, "production", "outage", source="slack")
    _accept_cancel(bot, jobs, inbox, other.id)
    clock.now += MAX_WAIT + timedelta(seconds=1)
    assert _handle_next(jobs, inbox) == "expired"
    assert bot.get(other.id).state == "opened"
    told = [c.args["text"] for c in fake.calls_to("chat.postEphemeral")]
    assert any("waited 10 minutes" in t and "nothing was done" in t for t in told), told


def _card_click(card: object, action_id: str, value: str) -> dict[str, object]:
    return {
        "action_id": action_id,
        "value": value,
        "channel": card.chat_channel,  # type: ignore[attr-defined]
        "message_ts": card.chat_message,  # type: ignore[attr-defined]
        "thread_ts": card.chat_thread,  # type: ignore[attr-defined]
    }


def _accept_cancel(bot: Rollbot, jobs: object, inbox: object, incident_id: int) -> None:
    from bot.inbox import NewRequest

    card = bot.get(incident_id)
    value = ActionValue(incident_id, nonce="nc").encode(jobs.flows.signer, "rb_cancel:go")  # type: ignore[attr-defined]
    payload = _card_click(card, "rb_cancel:go", value)
    inbox.accept(
        NewRequest(
            f"slack:click:c{incident_id}", "slack", "cancel", REQUESTER, incident_id, payload
        )
    )  # type: ignore[attr-defined]


def test_expired_approval_and_unexpected_errors_become_ephemerals(
    fake: FakeSlack, tmp_path: Path
) -> None:
    from tests.core_fixtures import Clock

    clock = Clock()
    bot, jobs, inbox = _jobs(fake, tmp_path, clock)
    flows = jobs.flows  # type: ignore[attr-defined]
    incident = flows.open(REQUESTER, "production", "expiry", source="slack")
    flows.answer(REQUESTER, incident.id, "app_broken")
    flows.choose(REQUESTER, incident.id, "app_rollback")
    flows.request_approval(REQUESTER, incident.id)
    flows.approve(ALICE, incident.id)
    clock.advance(minutes=31)  # production approvals live 30 minutes
    assert _click(bot, jobs, inbox, REQUESTER, incident.id, "run") == "refused"
    texts = [c.args["text"] for c in fake.calls_to("chat.postEphemeral")]
    assert any("expired: U0ALICE" in t for t in texts), texts
    assert bot.get(incident.id).state == "awaiting_approval"

    def boom(*_: object) -> None:
        raise ValueError("postgresql://u:hunter2@db/x exploded")

    jobs.handlers["cancel"] = boom  # type: ignore[attr-defined]
    _accept_cancel(bot, jobs, inbox, incident.id)
    item = inbox.claim("test-worker")  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        jobs.handle(item)  # type: ignore[attr-defined]
    jobs.tell_failure(item)  # what the worker does with an unexpected error  # type: ignore[attr-defined]
    last = fake.calls_to("chat.postEphemeral")[-1].args["text"]
    assert "unexpected error" in last and "hunter2" not in last and "Traceback" not in last
    bot.store.dispose()


def test_payloads_of_the_wrong_shape_are_refused_not_crashed_on() -> None:
    """Shapes the fuzz found crashing a listener or Bolt are a BadPayload at the door."""
    from handlers.slack.payloads import BadPayload, classify, for_bolt, parse_body

    for content_type, raw in (
        ("application/json", b'{"type": []}'),
        ("application/x-www-form-urlencoded", b"payload=%7B%22type%22%3A%7B%7D%7D"),
        ("application/json", b"[" * 5000),
        ("application/x-www-form-urlencoded", b"payload=" + b"[" * 5000),
        ("application/x-www-form-urlencoded", b"payload=%7Bnot-json"),
    ):
        with pytest.raises(BadPayload):
            classify(parse_body(content_type, raw))
    click = {
        "type": "block_actions",
        "user": {"id": "U0ALICE"},
        "team": 5,
        "authorizations": [5],
        "enterprise": True,
        "actions": [{"type": "button", "action_id": "rb_run:go", "value": "[" * 1999}],
    }
    seen_by_bolt = for_bolt(classify(click))
    assert {"team", "authorizations", "enterprise"}.isdisjoint(seen_by_bolt)
    with pytest.raises(RollbotError, match="not rollbot's"):
        ActionValue.decode("[" * 1999)


def test_a_click_is_placed_by_its_card_before_its_thread(core: Rollbot) -> None:
    a = core.open_incident(REQUESTER, "a", "staging")
    b = core.open_incident(REQUESTER, "b", "staging")
    core.attach_chat(a.id, "C1", "100.1", "100.2")
    core.attach_chat(b.id, "C1", "200.1", "200.2")
    assert core.incident_for_message("C1", "200.2", "200.1") == b.id  # B's card in B's thread
    assert core.incident_for_message("C1", "200.2", None) == b.id
    assert core.incident_for_message("C1", "200.2", "100.1") is None  # B's card, A's thread
    assert core.incident_for_message("C1", "100.9", "100.1") == a.id  # a message in A's thread
    assert core.incident_for_message("C2", "200.2", "200.1") is None


def test_checklist_clicks_are_ordered_with_their_incident() -> None:
    from handlers.slack.acks import _ordering_id
    from handlers.slack.metadata import ValueSigner, checklist_block_id

    block = checklist_block_id("before", 7, ValueSigner(b"k" * 32))
    assert _ordering_id("rb_tick:before", None, block) == (7, "")


def test_an_expired_approval_shows_as_expired_at_the_next_render(
    fake: FakeSlack, tmp_path: Path
) -> None:
    """A checklist tick after the approval's TTL re-renders the card: expired, no Run."""
    from tests.core_fixtures import Clock

    clock = Clock()
    bot, jobs, _inbox = _jobs(fake, tmp_path, clock)
    flows = jobs.flows  # type: ignore[attr-defined]
    incident = flows.open(REQUESTER, "production", "ttl", source="slack")
    flows.answer(REQUESTER, incident.id, "app_broken")
    flows.choose(REQUESTER, incident.id, "app_rollback")
    flows.request_approval(REQUESTER, incident.id)
    flows.approve(ALICE, incident.id)
    card = bot.get(incident.id)

    def latest_card() -> str:
        updates = [c for c in fake.calls_to("chat.update") if c.args.get("ts") == card.chat_message]
        return str(updates[-1].args["blocks"])

    assert "rb_run:go" in latest_card() and "approval expired at" not in latest_card()
    clock.advance(minutes=31)  # the approval's TTL is 30 minutes
    flows.set_ticks(REQUESTER, incident.id, "before", {"before.snapshot"})
    shown = latest_card()
    assert "approval expired at" in shown and "rb_run:go" not in shown
    assert "*Approvals:* 0/1" in shown


def test_the_router_answers_each_kind_records_once_and_never_raises(
    core: Rollbot, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    """The one router both transports use (``handlers.slack.acks``): the ack each kind of
    validated payload gets, what it records, and a handler's error answered, not raised."""
    acks = Acknowledger(core.settings, Inbox(core.store), make_web_client(BOT_TOKEN, fake.url))

    def recorded() -> list[tuple[str, str]]:
        with core.store.inbox_side.read() as session:  # on SQLite the inbox has its own file
            rows = session.scalars(select(InboxItem).order_by(InboxItem.id))
            return [(row.action, row.key) for row in rows]

    command = classify(command_body(REQUESTER, "production the app is down", trigger="t.1"))
    assert acks.dispatch(command) == {
        "text": ":inbox_tray: Opening an incident…",
        "response_type": "ephemeral",
    }
    assert acks.dispatch(command) == acks.dispatch(command)  # Slack's retry: recorded once
    assert recorded() == [("rollback", "slack:command:t.1")]
    other = classify({**command_body(REQUESTER, "x"), "command": "/deploy"})
    assert acks.dispatch(other) == {
        "text": ":warning: rollbot answers `/rollback` only.",
        "response_type": "ephemeral",
    }
    challenge = classify({"type": "url_verification", "challenge": "c-1"})
    assert acks.dispatch(challenge) == {"challenge": "c-1"}
    view = {"id": "V1", "type": "modal", "callback_id": "rb_root_cause"}
    blank = classify({"type": "view_submission", "user": {"id": ALICE}, "view": view})
    assert acks.dispatch(blank) == {
        "response_action": "errors",
        "errors": {"root_cause": "Describe the root cause"},
    }
    foreign = {
        "type": "view_submission",
        "user": {"id": ALICE},
        "view": {**view, "callback_id": "x"},
    }
    click = classify(
        block_action_payload(ALICE, {"action_id": "rb_cancel", "type": "button"}, "C1", "1.1")
    )
    assert acks.dispatch(classify(foreign)) is None
    assert len(recorded()) == 1

    def broken(_payload: object) -> None:
        raise RuntimeError("postgresql://app:hunter2@db/x is gone")

    acks.command = broken  # type: ignore[method-assign]
    acks.click = broken  # type: ignore[method-assign]
    with caplog.at_level("ERROR"):
        assert acks.dispatch(command) == {"text": ACK_FAILED, "response_type": "ephemeral"}
        assert acks.dispatch(click) is None  # an interaction's ack body is ignored by Slack
    assert "RuntimeError" in caplog.text and "hunter2" not in caplog.text
