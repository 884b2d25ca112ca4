"""What a card cannot hold goes into the thread as files; nothing is cut open."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bot.config import load_settings
from bot.executor import Executor
from bot.service import Rollbot
from handlers.runtime import Runtime, register_provider_steps
from handlers.slack import blocks
from handlers.slack.client import make_web_client
from handlers.slack.flows import IncidentFlows
from handlers.slack.poster import SlackPoster
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from tests.slack.fake_slack import BOT_TOKEN, FakeSlack
from tests.slack.serving import REQUESTER, write_slack_config

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "samples" / "drizzle" / "Dokploy__dokploy"
pytestmark = [pytest.mark.postgres, pytest.mark.slow]
BIG = next(e for e in read_journal(SAMPLE).entries if e.tag == "0105_clumsy_quicksilver")


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    f = FakeSlack().start()
    yield f
    f.stop()


def _flows(fake: FakeSlack, tmp_path: Path, migrations: Path | None = None) -> IncidentFlows:
    cfg = write_slack_config(tmp_path)
    if migrations is not None:
        cfg.write_text(
            cfg.read_text().replace(
                "[environments.production]\n",
                f'[environments.production]\nmigrations_dir = "{migrations}"\n',
            )
        )
    settings = load_settings(cfg)
    register_provider_steps()
    bot = Rollbot.open(settings)
    poster = SlackPoster(make_web_client(BOT_TOKEN, fake.url))
    return IncidentFlows(Runtime(settings, bot, Executor(bot)), poster, debounce_seconds=0)


def _sections(fake: FakeSlack) -> list[str]:
    texts = []
    for call in fake.calls_to("chat.update") + fake.calls_to("chat.postMessage"):
        for block in call.args.get("blocks") or []:
            if block.get("type") == "section":
                texts.append(block["text"]["text"])
        texts.append(call.args.get("text", ""))
    return texts


def test_a_long_forward_fix_plan_is_a_summary_and_its_reverse_a_file(
    fake: FakeSlack, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(SAMPLE, folder)
    apply_migrations(pg_url, read_journal(folder), upto=BIG.idx)
    monkeypatch.setenv("ROLLBOT_SLACK_PROD_URL", pg_url)
    flows = _flows(fake, tmp_path, folder)
    incident = flows.open(REQUESTER, "production", "the newest migration broke it", "slack")
    flows.answer(REQUESTER, incident.id, "schema_only")
    options = {"migration": BIG.tag}  # a big migration: its plan does not fit on the card
    flows.bot.choose_method(incident.id, "forward_fix", REQUESTER, options)
    flows.refresh(incident.id)
    flows.attach_plan_files(incident.id)

    card = flows.bot.get(incident.id)
    assert blocks.plan_too_long(card)
    shown = str(fake.messages[(card.chat_channel, card.chat_message)]["blocks"])
    assert f"{card.ref}-plan.txt" in shown
    assert all(t.count("```") % 2 == 0 for t in _sections(fake)), "a code block left open"
    names = {f["filename"]: f for f in fake.files}
    plan = names[f"{card.ref}-plan.txt"]
    assert plan["channel"] == card.chat_channel and plan["thread_ts"] == card.chat_thread
    (reverse,) = [f for n, f in names.items() if n.startswith(f"{card.ref}-reverse-")]
    sql = reverse["content"].decode()
    assert (sql.strip() and sql.strip() in plan["content"].decode()) or "drafted reverse" in (
        plan["content"].decode()
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql)  # the complete reverse applies cleanly

    flows.attach_plan_files(incident.id)  # the same plan: no second upload
    assert len(fake.files) == len(names)


def test_a_long_timeline_keeps_its_first_and_last_events(fake: FakeSlack, tmp_path: Path) -> None:
    flows = _flows(fake, tmp_path)
    incident = flows.open(REQUESTER, "production", "many ticks", "slack")
    for n in range(100):  # 200 events: ticked and unticked
        flows.bot.tick(incident.id, "before.stakeholders", REQUESTER, ticked=n % 2 == 0)
        flows.bot.tick(incident.id, "before.stakeholders", REQUESTER, ticked=n % 2 == 1)
    flows.cancel(REQUESTER, incident.id)

    (message,) = [
        c.args["text"]
        for c in fake.calls_to("chat.postMessage")
        if c.args.get("text", "").startswith(f"*Timeline of {incident.ref}*")
    ]
    assert "opened" in message and "cancelled" in message and "more events" in message
    assert message.count("```") % 2 == 0
    (timeline,) = [f for f in fake.files if f["filename"] == f"{incident.ref}-timeline.md"]
    body = timeline["content"].decode()
    assert body.count("\n- ") >= 200 and "opened" in body and "cancelled" in body
