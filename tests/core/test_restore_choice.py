"""Reading a restore time people typed (the postgres restore's choices: tests/test_restore_choice.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.restore_choice import parse_restore_time


def test_restore_times_are_read_in_the_team_time_zone() -> None:
    berlin = parse_restore_time("2026-07-01 14:30", "Europe/Berlin")
    assert berlin.astimezone(UTC) == datetime(2026, 7, 1, 12, 30, tzinfo=UTC)
    assert parse_restore_time("2026-07-01T14:30Z", "Europe/Berlin").hour == 14
