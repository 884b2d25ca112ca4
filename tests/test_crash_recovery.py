"""A real rollbot process SIGKILLed mid-step: the step becomes interrupted, never re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.service import Rollbot
from handlers.runtime import register_provider_steps
from tests.core_fixtures import write_config
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]


def rollbot(cfg: Path, *args: str, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "--config", str(cfg), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def step_row(bot: Rollbot, incident_id: int):
    return bot.get(incident_id).steps[0]


def _step_running(bot: Rollbot, incident_id: int, proc: subprocess.Popen[str]) -> bool:
    """Whether the step is running yet; a ``rollbot run`` that exited first fails at once."""
    assert proc.poll() is None, proc.communicate()
    return step_row(bot, incident_id).status == "running"


@pytest.mark.slow
def test_sigkill_mid_step_leaves_it_interrupted_and_not_rerun(tmp_path: Path) -> None:
    marker = f"{30 + uuid.uuid4().int % 1000 / 1000:.3f}"  # a unique `sleep` to find and clean up
    cfg = write_config(
        tmp_path, f"sqlite:///{tmp_path / 'state.db'}", app_rollback=f"sleep {marker}"
    )
    register_provider_steps()
    bot = Rollbot.open(load_settings(cfg))
    incident = bot.open_incident("alice", "deploy broke the app", environment="production")
    bot.answer(incident.id, "app_broken", "alice")
    bot.choose_method(incident.id, "app_rollback", "alice")
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")

    proc = rollbot(cfg, "run", incident.ref, "--as", "alice", start_new_session=True)
    try:
        wait_until(lambda: _step_running(bot, incident.id, proc), "the step to start")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        subprocess.run(["pkill", "-f", f"sleep {marker}"], check=False)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]

    assert step_row(bot, incident.id).status == "running"  # nobody has looked yet
    show = rollbot(cfg, "show", incident.ref)
    out, err = show.communicate(timeout=60)
    assert show.returncode == 0, err
    assert "step 1 [interrupted]" in out
    step = step_row(bot, incident.id)
    assert step.status == "interrupted" and step.attempt == 1

    again = rollbot(cfg, "run", incident.ref, "--as", "alice")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 1
    step = step_row(bot, incident.id)
    assert step.status == "interrupted" and step.attempt == 1  # not run a second time
    with bot.store.session() as s:
        from bot.audit import timeline

        kinds = [(e.kind, e.message) for e in timeline(s, incident.id)]
    assert sum(1 for k, m in kinds if k == "step" and "started" in m) == 1
    assert any(k == "interrupted" for k, _ in kinds)

    decided = rollbot(cfg, "step", incident.ref, "1", "abandon", "--as", "alice")
    out, err = decided.communicate(timeout=60)
    assert decided.returncode == 0, err
    assert bot.get(incident.id).state == "failed"
