"""``rollbot postmortem INC``: the draft and the invite on disk, paths on stdout, the slot
in the team's business hours, one line and a non-zero exit for an unknown incident."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import select

import tests.fake_provider  # noqa: F401  (registers the fake provider and its steps)
from bot.config import WEEKDAYS, load_settings
from bot.models import AuditEvent
from bot.postmortem import default_delay
from handlers.cli import main
from handlers.runtime import start_runtime
from tests.fake_provider import reset_platform, write_fake_config

TEAM_ZONE = ZoneInfo("Europe/Berlin")
BUSINESS_HOURS = """
[business_hours]
timezone = "Europe/Berlin"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "17:00"
"""


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("SLACK_BOT_TOKEN", "PAGERDUTY_ROUTING_KEY", "PAGERDUTY_CTO_ROUTING_KEY"):
        monkeypatch.delenv(name, raising=False)  # nothing is delivered when the command ends
    reset_platform()
    path = write_fake_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    path.write_text(path.read_text() + BUSINESS_HOURS)
    return str(path)


@pytest.fixture
def incident_ref(cfg: str) -> str:
    """A production restore on the fake platform, run, with a Slack thread and a secret."""
    rt = start_runtime(cfg)
    bot = rt.bot
    incident = bot.open_incident(
        "alice", "orders lost; dsn postgresql://app:s3cr3t-pw@db/prod", environment="production"
    )
    bot.answer(incident.id, "data_corruption", "alice")
    bot.choose_method(incident.id, "pitr", "alice", options={"expect": "0001_good"})
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    assert rt.executor.run_incident(incident.id).state == "verifying"
    bot.attach_chat(incident.id, "C0INCIDENTS", "1764000000.000100")
    return incident.ref


def read_invite(path: Path) -> Calendar:
    return Calendar.from_ical(path.read_bytes())


def the_event(calendar: Calendar) -> object:
    (event,) = calendar.walk("VEVENT")
    return event


def test_writes_the_draft_and_an_invite_in_business_hours(
    cfg: str, incident_ref: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    before = datetime.now(UTC)
    code = main(["--config", cfg, "postmortem", incident_ref, "--output", str(out_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    draft, invite = (
        out_dir / f"postmortem-{incident_ref}.md",
        out_dir / f"postmortem-{incident_ref}.ics",
    )
    assert out.splitlines() == [str(draft), str(invite)]
    assert "post-mortem meeting proposed for" in err

    text = draft.read_text()
    assert text.startswith(f"# Post-mortem: {incident_ref} — orders lost")
    assert "## Timeline" in text and "## Root cause" in text
    assert "s3cr3t-pw" not in text and "postgresql://app:***@db/prod" in text

    event = the_event(read_invite(invite))
    start, end = event.decoded("DTSTART"), event.decoded("DTEND")
    assert start.utcoffset() == timedelta(0) and end - start == timedelta(minutes=60)
    raw = invite.read_bytes().decode()
    assert re.search(r"^DTSTART:\d{8}T\d{6}Z\r$", raw, re.M)  # UTC, no TZID; CRLF lines
    assert re.search(r"^DTEND:\d{8}T\d{6}Z\r$", raw, re.M)
    local_start, local_end = start.astimezone(TEAM_ZONE), end.astimezone(TEAM_ZONE)
    assert WEEKDAYS[local_start.weekday()] in ("mon", "tue", "wed", "thu", "fri")
    assert time(9) <= local_start.time() and local_end.time() <= time(17)
    assert local_start.date() == local_end.date()
    settings = load_settings(cfg)
    assert start >= before + default_delay(settings)
    assert str(event["SUMMARY"]).startswith(f"Post-mortem: {incident_ref} — orders lost")
    assert "https://slack.com/archives/C0INCIDENTS/p1764000000000100" in str(event["DESCRIPTION"])
    assert "ORGANIZER" not in event
    assert "s3cr3t-pw" not in invite.read_text()

    rt = start_runtime(cfg)
    with rt.bot.store.read() as session:
        notes = session.scalars(select(AuditEvent).where(AuditEvent.kind == "postmortem")).all()
    assert len(notes) == 1 and "post-mortem draft written" in notes[0].message
    assert notes[0].data["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_invite_keeps_its_uid_and_counts_its_versions(
    cfg: str, incident_ref: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--config", cfg, "postmortem", incident_ref, "--output", str(tmp_path)]
    assert main([*argv, "--delay-days", "1"]) == 0
    first = the_event(read_invite(tmp_path / f"postmortem-{incident_ref}.ics"))
    assert main([*argv, "--delay-days", "6", "--length-minutes", "30"]) == 0
    second = the_event(read_invite(tmp_path / f"postmortem-{incident_ref}.ics"))
    assert str(first["UID"]) == str(second["UID"])
    assert (int(first["SEQUENCE"]), int(second["SEQUENCE"])) == (0, 1)
    assert second.decoded("DTEND") - second.decoded("DTSTART") == timedelta(minutes=30)
    assert second.decoded("DTSTART") > first.decoded("DTSTART")
    capsys.readouterr()


def test_json_prints_only_json(
    cfg: str,
    incident_ref: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # the default output directory is the current one
    before = datetime.now(UTC)
    code = main(["--config", cfg, "postmortem", incident_ref, "--json", "--delay-days", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"incident", "draft", "invite", "start", "end", "timezone"}
    assert doc["incident"] == incident_ref and doc["timezone"] == "Europe/Berlin"
    assert Path(doc["draft"]).resolve() == (tmp_path / f"postmortem-{incident_ref}.md").resolve()
    assert Path(doc["invite"]).is_file()
    assert doc["start"].endswith("Z") and doc["end"].endswith("Z")
    start = datetime.fromisoformat(doc["start"])
    assert start >= before + timedelta(days=2)
    assert datetime.fromisoformat(doc["end"]) - start == timedelta(hours=1)
    event = the_event(read_invite(Path(doc["invite"])))
    assert event.decoded("DTSTART") == start


def test_unknown_incident_is_one_line_and_nothing_written(
    cfg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    code = main(["--config", cfg, "postmortem", "INC-404", "--output", str(out_dir)])
    out, err = capsys.readouterr()
    assert code != 0
    assert out == "" and err.strip().splitlines() == ["rollbot: no incident 'INC-404'"]
    assert not out_dir.exists()


def test_bad_options_are_one_line(
    cfg: str, incident_ref: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["--config", cfg, "postmortem", incident_ref, "--length-minutes", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "rollbot: --length-minutes must be between 1 and 1440, not 0"
    ]
    # Longer than the business day (09:00-17:00): no slot can hold it.
    assert main(["--config", cfg, "postmortem", incident_ref, "--length-minutes", "600"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no 600-minute slot" in err[0]
