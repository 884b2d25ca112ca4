"""`rollbot shell` driven through stdin records a real incident with its audit trail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bot.audit import timeline
from bot.config import load_settings
from bot.service import Rollbot
from providers.postgres.snapshot import create_snapshot
from providers.storage import open_storage
from tests.core_fixtures import write_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.postgres


def test_shell_walks_production_data_corruption_to_pitr(tmp_path: Path, pg_url: str) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("create table users (id int primary key, email text)")
    settings = load_settings(cfg)
    create_snapshot(pg_url, open_storage(settings.environment("production").backups))

    answers = "\n".join(
        [
            "users.new_column breaks login",
            "7",  # out of range: asked again
            "production",  # not a number: asked again
            "3",  # production
            "1",  # data corruption
            "1",  # point-in-time restore (recommended)
            "1",  # request approval
        ]
    )
    env = {**os.environ, "ROLLBOT_TEST_PROD_URL": pg_url}
    proc = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "--config", str(cfg), "shell", "--as", "alice"],
        input=answers + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Please enter a number from 1 to 3" in out
    assert "Point-in-Time" in out or "PITR" in out
    assert "other than you" in out
    assert "Traceback" not in proc.stderr

    from handlers.runtime import register_provider_steps

    register_provider_steps()
    os.environ["ROLLBOT_TEST_PROD_URL"] = pg_url
    try:
        bot = Rollbot.open(settings)
        (incident,) = bot.open_incidents()
        assert incident.answers == ["production", "data_corruption"]
        assert incident.method == "pitr"
        assert incident.state == "awaiting_approval"
        assert incident.requester == "alice"
        with bot.store.session() as s:
            messages = [e.message for e in timeline(s, incident.id)]
        assert any("opened" in m for m in messages)
        assert any("decision: data_corruption" in m for m in messages)
        assert any("method chosen" in m for m in messages)
        assert any("awaiting approval" in m for m in messages)
        assert pg_url.split(":")[2].split("@")[0] not in "\n".join(messages)  # no password
    finally:
        del os.environ["ROLLBOT_TEST_PROD_URL"]


def test_shell_end_of_input_leaves_incident_recorded(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    proc = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "--config", str(cfg), "shell", "--as", "bob"],
        input="staging looks wrong\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "incident and its audit trail are in the store" in proc.stdout
    bot = Rollbot.open(load_settings(cfg))
    (incident,) = bot.open_incidents()
    assert incident.state == "opened" and incident.description == "staging looks wrong"
