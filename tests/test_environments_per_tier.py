"""A tier with several environments: people say which one, in the core, the card and the shell."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import RollbotError
from bot.executor import Executor
from bot.service import Rollbot
from handlers.runtime import register_provider_steps
from tests.core_fixtures import write_config

REPO = Path(__file__).resolve().parents[1]
TWO_PRODUCTIONS = """
[environments.prod-eu]
tier = "production"
database_url_env = "ROLLBOT_TEST_PROD_EU_URL"
backups = "{backups}/prod-eu"

[environments.prod-eu.commands]
app_rollback = "echo eu rolled back"

[environments.prod-us]
tier = "production"
database_url_env = "ROLLBOT_TEST_PROD_US_URL"
backups = "{backups}/prod-us"

[environments.prod-us.commands]
app_rollback = "echo us rolled back"
"""


def two_productions(tmp_path: Path) -> Path:
    """The core tests' config with production split into prod-eu and prod-us."""
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    text = cfg.read_text()
    start = text.index("[environments.production]")
    end = text.index("timeout_seconds", start)
    end = text.index("\n", end) + 1
    cfg.write_text(text[:start] + TWO_PRODUCTIONS.format(backups=tmp_path / "backups") + text[end:])
    return cfg


@pytest.fixture
def bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rollbot]:
    monkeypatch.setenv("ROLLBOT_TEST_PROD_EU_URL", "postgresql://u@127.0.0.1:9/eu")
    monkeypatch.setenv("ROLLBOT_TEST_PROD_US_URL", "postgresql://u@127.0.0.1:9/us")
    register_provider_steps()
    rollbot = Rollbot.open(load_settings(two_productions(tmp_path)))
    yield rollbot
    rollbot.store.dispose()


@pytest.mark.parametrize("region", ["prod-eu", "prod-us"])
def test_each_production_environment_can_be_rolled_back(bot: Rollbot, region: str) -> None:
    incident = bot.open_incident("alice", "checkout broken", environment="production")
    assert incident.environment is None and incident.tier == "production"
    assert bot.environments_to_choose(incident) == ["prod-eu", "prod-us"]
    with pytest.raises(RollbotError, match="first choose which production environment"):
        bot.answer(incident.id, "app_broken", "alice")
    with pytest.raises(RollbotError, match="not an environment to choose"):
        bot.choose_environment(incident.id, "staging", "alice")

    bot.choose_environment(incident.id, region, "alice")
    bot.answer(incident.id, "app_broken", "alice")
    bot.choose_method(incident.id, "app_rollback", "alice")
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    done = Executor(bot).run_incident(incident.id)
    assert done.environment == region and done.steps[0].status == "succeeded"
    ran = [e.message for e in bot_events(bot, incident.id) if "rolled back" in e.message]
    assert ran and all(f"{region.removeprefix('prod-')} rolled back" in m for m in ran), ran


def bot_events(bot: Rollbot, incident_id: int) -> list:
    from bot.audit import timeline

    with bot.store.session() as session:
        return list(timeline(session, incident_id))


def test_the_tree_answer_for_the_tier_asks_which_environment(bot: Rollbot) -> None:
    incident = bot.open_incident("alice", "no environment said")
    bot.answer(incident.id, "production", "alice")
    incident = bot.get(incident.id)
    assert incident.tier == "production" and incident.environment is None
    assert bot.environments_to_choose(incident) == ["prod-eu", "prod-us"]


def test_the_shell_asks_which_environment(tmp_path: Path) -> None:
    cfg = two_productions(tmp_path)
    answers = ["checkout broken", "3", "2", "3", "1", "1"]  # production, prod-us, app broken
    env = {
        **os.environ,
        "ROLLBOT_TEST_PROD_EU_URL": "postgresql://u@127.0.0.1:9/eu",
        "ROLLBOT_TEST_PROD_US_URL": "postgresql://u@127.0.0.1:9/us",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "--config", str(cfg), "shell", "--as", "alice"],
        input="\n".join(answers) + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Which production environment?" in proc.stdout and "prod-us" in proc.stdout
    register_provider_steps()
    bot = Rollbot.open(load_settings(cfg))
    (incident,) = bot.open_incidents()
    assert incident.environment == "prod-us"
    assert incident.answers[:2] == ["production", "app_broken"]


def test_the_card_asks_which_environment(tmp_path: Path) -> None:
    """Rendered by the Slack flows against the fake: one button per environment."""
    from handlers.runtime import Runtime
    from handlers.slack import blocks
    from handlers.slack.client import make_web_client
    from handlers.slack.flows import IncidentFlows, parse_rollback_text
    from handlers.slack.poster import SlackPoster
    from tests.slack.fake_slack import BOT_TOKEN, FakeSlack

    fake = FakeSlack().start()
    try:
        settings = load_settings(two_productions(tmp_path))
        assert parse_rollback_text("production checkout broken", settings) == (
            "production",
            "checkout broken",
        )
        register_provider_steps()
        bot = Rollbot.open(settings)
        poster = SlackPoster(make_web_client(BOT_TOKEN, fake.url))
        flows = IncidentFlows(Runtime(settings, bot, Executor(bot)), poster)
        incident = flows.open("U0REQ", "production", "checkout broken", "slack")
        text = str(blocks.incident_card(flows.card_view(bot.get(incident.id)))[1])
        assert "Which production environment is it?" in text
        assert "rb_environment:prod-eu" in text and "rb_environment:prod-us" in text
        assert "rb_answer:" not in text
        flows.choose_environment("U0REQ", incident.id, "prod-eu")
        text = str(blocks.incident_card(flows.card_view(bot.get(incident.id)))[1])
        assert "rb_answer:app_broken" in text and "rb_environment" not in text
    finally:
        fake.stop()
