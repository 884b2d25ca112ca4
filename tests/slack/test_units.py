"""In-process pieces of the Slack app: debouncing, group cache, button values, the card."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import RollbotError
from bot.service import Rollbot
from bot.steps import StepResult
from handlers.runtime import register_provider_steps
from handlers.slack import blocks
from handlers.slack.client import SlackGroupDirectory, make_web_client
from handlers.slack.flows import parse_rollback_text
from handlers.slack.metadata import ActionValue, idempotency_key
from handlers.slack.poster import SlackPoster
from handlers.slack.progress import Debouncer, SlackProgressSink
from tests.slack.conftest import ALICE, BOB, DBA_GROUP, REQUESTER, write_slack_config
from tests.slack.fake_slack import BOT_TOKEN, FakeSlack, _block_problems


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


def test_expired_approval_and_unexpected_errors_become_ephemerals(
    fake: FakeSlack, tmp_path: Path
) -> None:
    from bot.executor import Executor
    from handlers.runtime import Runtime
    from handlers.slack.app import GENERIC_ERROR, Dispatcher, ReplyTo
    from handlers.slack.flows import IncidentFlows
    from tests.core_fixtures import Clock

    register_provider_steps()
    clock = Clock()
    settings = load_settings(write_slack_config(tmp_path))
    bot = Rollbot.open(settings, clock=clock)
    runtime = Runtime(settings, bot, Executor(bot))
    poster = SlackPoster(make_web_client(BOT_TOKEN, fake.url))
    flows = IncidentFlows(runtime, poster)
    dispatcher = Dispatcher(bot, poster)
    incident = flows.open(REQUESTER, "production", "expiry", source="slack")
    flows.answer(REQUESTER, incident.id, "app_broken")
    flows.choose(REQUESTER, incident.id, "app_rollback")
    flows.request_approval(REQUESTER, incident.id)
    flows.approve(ALICE, incident.id)
    clock.advance(minutes=31)  # production approvals live 30 minutes
    reply = ReplyTo("C0INCIDENTS", REQUESTER)
    dispatcher.submit("k1", reply, lambda: flows.run(REQUESTER, incident.id)).result(10)
    texts = [c.args["text"] for c in fake.calls_to("chat.postEphemeral")]
    assert any("expired: U0ALICE" in t for t in texts), texts
    assert bot.get(incident.id).state == "awaiting_approval"

    def boom() -> None:
        raise ValueError("postgresql://u:hunter2@db/x exploded")

    dispatcher.submit("k2", reply, boom).result(10)
    last = fake.calls_to("chat.postEphemeral")[-1].args["text"]
    assert last == GENERIC_ERROR and "hunter2" not in last and "Traceback" not in last
    dispatcher.submit("k2", reply, boom).result(10)  # same key: nothing happens again
    assert fake.calls_to("chat.postEphemeral")[-1].args["text"] == GENERIC_ERROR
    assert len(fake.calls_to("chat.postEphemeral")) == len(texts) + 1
    dispatcher.shutdown()
    bot.store.dispose()
