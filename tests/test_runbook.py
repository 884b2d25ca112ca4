"""`rollbot runbook` prints the runbook (its data is checked in tests/core/test_runbook.py)."""

from __future__ import annotations

import pytest

from bot.runbook_markdown import render_markdown
from handlers.cli import main


def test_cli_prints_the_runbook(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runbook"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == render_markdown()
    assert "## Option 3: Point-in-Time Restore (PITR)" in out
