"""The CLI beside a running Slack app: its decisions are picked up by the running worker
within seconds (queued steps run, the card shows what changed), never run twice."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import update

from bot.models import Step
from tests.slack.conftest import ALICE, REQUESTER
from tests.slack.driver import SlackDriver
from tests.slack.serving import ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def cli(d: SlackDriver, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "--config", str(d.config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cli_approval_and_step_decision_reach_the_running_worker(http_driver: SlackDriver) -> None:
    d = http_driver
    card = d.open_card(REQUESTER, "production cli-beside-slack")
    d.wait_card(card, lambda t: "rb_answer:app_broken" in t, "question")
    d.click(REQUESTER, card, "rb_answer:app_broken")
    d.wait_card(card, lambda t: "rb_choose:app_rollback" in t, "recommendation")
    d.click(REQUESTER, card, "rb_choose:app_rollback")
    d.wait_state(card, "method_chosen")
    d.click(REQUESTER, card, "rb_request_approval")
    d.wait_state(card, "awaiting_approval")

    cli(d, "approve", f"INC-{card.incident_id}", "--as", ALICE)
    d.wait_card(card, lambda t: "rb_run:" in t and "1/1" in t, "the CLI's approval on the card")

    # Started from the core (as `rollbot run` would) and interrupted before any worker ran it.
    bot = d.bot
    incident = bot.start(card.incident_id, REQUESTER)
    with bot.store.session() as s:
        s.execute(
            update(Step)
            .where(Step.incident_id == card.incident_id, Step.seq == 1)
            .values(status="interrupted", attempt=1)
        )
    assert incident.state == "running"
    out = cli(d, "step", f"INC-{card.incident_id}", "1", "retry", "--as", REQUESTER)
    assert "retry; incident is running" in out  # not destructive: queued again at once
    d.wait_card(card, lambda t: "· verifying" in t, "the worker running the retried step")
    steps = bot.get(card.incident_id).steps
    assert [s.status for s in steps] == ["succeeded", "succeeded"]
    started = [e for e in d.audit(card.incident_id) if e.kind == "step" and "started" in e.message]
    assert len(started) == len(steps)  # each step ran once
