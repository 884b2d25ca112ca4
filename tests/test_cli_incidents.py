"""Incident commands on the CLI: one clear line and exit 2 on bad input; the timeline prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.cli import main
from tests.core_fixtures import write_config


@pytest.fixture
def cfg(tmp_path: Path) -> str:
    return str(write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}"))


def run(cfg: str, *args: str) -> int:
    return main(["--config", cfg, *args])


def test_full_app_rollback_from_the_cli(
    cfg: str, capsys: pytest.CaptureFixture[str], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.config import load_settings
    from handlers.runtime import start_runtime

    monkeypatch.setenv("ROLLBOT_TEST_PROD_URL", pg_url)
    rt = start_runtime(load_settings(cfg))
    incident = rt.bot.open_incident("alice", "deploy broke the app", environment="production")
    rt.bot.answer(incident.id, "app_broken", "alice")
    rt.bot.choose_method(incident.id, "app_rollback", "alice")
    rt.bot.request_approval(incident.id, "alice")

    assert run(cfg, "approve", incident.ref, "--as", "alice") == 2
    assert "cannot approve it in production" in capsys.readouterr().err
    assert run(cfg, "approve", incident.ref, "--as", "mallory") == 2
    assert "mallory is not an approver" in capsys.readouterr().err
    assert run(cfg, "approve", incident.ref, "--as", "bob") == 0
    assert run(cfg, "run", incident.ref, "--as", "alice") == 0
    out = capsys.readouterr().out
    assert "step 1 ok" in out and "is verifying" in out
    assert run(cfg, "resolve", incident.ref, "--as", "alice") == 2
    assert "unticked checklist item" in capsys.readouterr().err
    assert run(cfg, "tick", incident.ref, "after.verify_database", "--as", "carol") == 0
    assert run(cfg, "resolve", incident.ref, "--as", "alice", "--confirm-unticked") == 0
    capsys.readouterr()
    assert run(cfg, "audit", incident.ref) == 0
    timeline = capsys.readouterr().out
    for expected in (
        "opened",
        "Refused approve",
        "approved by bob",
        "step 1 started",
        "resolved with",
    ):
        assert expected in timeline, expected


def test_bad_input_is_one_line_exit_2(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cfg, "audit", "INC-404") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rollbot: no incident 'INC-404'"]
    assert run(cfg, "show", "banana") == 2
    assert "not an incident id" in capsys.readouterr().err
    assert run(cfg, "tick", "INC-1", "x") == 2
    assert main(["--config", "/nonexistent/rollbot.toml", "incidents"]) == 2
    assert "configuration file not found" in capsys.readouterr().err
