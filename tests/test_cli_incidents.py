"""Incident commands on the CLI: one clear line and exit 2 on bad input; the timeline prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from bot.models import AuditEvent
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
    assert "mallory may not approve" in capsys.readouterr().err
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


def _unmapped_config(tmp_path: Path, identities: str = "") -> str:
    """The core config without the test's own OS-user mapping (or with ``identities``)."""
    path = Path(write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}"))
    lines = path.read_text().splitlines()
    at = lines.index("[cli.identities]")
    path.write_text("\n".join([*lines[:at], "[cli.identities]", identities, *lines[at + 2 :]]))
    return str(path)


def test_as_is_honoured_only_for_mapped_identities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    from bot.config import load_settings
    from handlers.runtime import start_runtime

    me = getpass.getuser()
    cfg = _unmapped_config(tmp_path, f'{me} = ["U0ALICE"]')
    rt = start_runtime(load_settings(cfg))
    incident = rt.bot.open_incident(me, "who may act", environment="staging")

    assert run(cfg, "cancel", incident.ref, "--as", "bob") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"rollbot: OS user {me!r} may not act as 'bob'; map it in [cli.identities] of {cfg}"
    ]
    monkeypatch.setenv("ROLLBOT_ACTOR", "bob")  # the environment is a claim like --as
    assert run(cfg, "cancel", incident.ref) == 2
    monkeypatch.delenv("ROLLBOT_ACTOR")
    with rt.bot.store.session() as s:
        refusals = list(s.scalars(select(AuditEvent).where(AuditEvent.kind == "refused")))
    assert len(refusals) == 2 and all(e.actor == me and "bob" in e.message for e in refusals)
    assert rt.bot.get(incident.id).state == "triaged"

    # No --as: the one identity the login maps to. U0ALICE is no approver and has not
    # acted on the incident, so cancelling it is refused by the core, and audited.
    assert run(cfg, "cancel", incident.ref) == 2
    assert "U0ALICE may not cancel" in capsys.readouterr().err
    # Acting as yourself needs no mapping; every event records the OS user behind it.
    assert run(cfg, "cancel", incident.ref, "--as", me) == 0
    with rt.bot.store.session() as s:
        from bot.audit import timeline

        cancelled = [e for e in timeline(s, incident.id) if "cancelled" in e.message][-1]
    assert cancelled.actor == me and cancelled.data["via"] == f"cli (os user {me})"
