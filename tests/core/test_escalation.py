"""Who is told, and how: business hours, after hours, production's CTO escalation."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from bot.config import BusinessHoursConfig, Settings, SlackConfig
from bot.escalation import Event, notices_for, pagers_for

BERLIN = BusinessHoursConfig(
    timezone="Europe/Berlin", start=time(9), end=time(18), holidays=(date(2026, 12, 24),)
)


def settings(hours: BusinessHoursConfig = BERLIN) -> Settings:
    return Settings(business_hours=hours, slack=SlackConfig(database_admin="S0DBA"))


def event(kind: str = "opened", tier: str = "production") -> Event:
    return Event(kind, 7, "INC-7", tier, tier, "INC-7 opened", {"requester": "U1"})  # type: ignore[arg-type]


WEDNESDAY_NOON = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)  # 12:00 in Berlin
WEDNESDAY_NIGHT = datetime(2026, 12, 2, 21, 49, tzinfo=UTC)  # 22:49 in Berlin
SATURDAY_NOON = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)
CHRISTMAS_EVE_NOON = datetime(2026, 12, 24, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "tier", "pagers"),
    [
        (WEDNESDAY_NOON, "production", ()),
        (WEDNESDAY_NIGHT, "production", ("oncall", "cto")),
        (WEDNESDAY_NIGHT, "staging", ("oncall",)),
        (SATURDAY_NOON, "production", ("oncall", "cto")),
        (CHRISTMAS_EVE_NOON, "staging", ("oncall",)),
    ],
)
def test_pagers_follow_business_hours_and_tier(now: datetime, tier: str, pagers: tuple) -> None:
    assert pagers_for(tier, now, settings()) == pagers


def test_the_dst_switch_hours_are_read_in_local_time() -> None:
    night_shift = BusinessHoursConfig(
        timezone="Europe/Berlin", days=("sun",), start=time(2), end=time(3)
    )
    # 2026-10-25: 02:30 happens twice in Berlin (00:30 and 01:30 UTC); both are inside.
    assert (
        pagers_for("staging", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), settings(night_shift))
        == ()
    )
    assert (
        pagers_for("staging", datetime(2026, 10, 25, 1, 30, tzinfo=UTC), settings(night_shift))
        == ()
    )
    # 2026-03-29: 02:00-03:00 does not exist in Berlin; 01:00 UTC is already 03:00.
    spring = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert pagers_for("staging", spring, settings(night_shift)) == ("oncall",)


def test_in_hours_staging_pages_nobody_and_mentions_the_admin() -> None:
    (devops,) = notices_for(
        event(tier="staging"), WEDNESDAY_NOON, settings(), can_page={"oncall", "cto"}, paged=()
    )
    assert devops.audience == "devops" and devops.mention == "S0DBA"


def test_after_hours_production_pages_on_call_and_the_cto_with_one_key_each() -> None:
    notices = notices_for(
        event(), WEDNESDAY_NIGHT, settings(), can_page={"oncall", "cto"}, paged=()
    )
    assert [n.audience for n in notices] == ["devops", "oncall", "cto"]
    assert notices[0].mention is None  # nobody to mention at night: they are paged
    again = notices_for(
        event("step_failed"), WEDNESDAY_NIGHT, settings(), can_page={"oncall", "cto"}, paged=()
    )
    assert [n.key for n in again[1:]] == [n.key for n in notices[1:]]  # same alerts
    assert notices[1].key != notices[2].key and notices[1].severity == "critical"


def test_an_end_resolves_exactly_what_was_paged_even_in_hours() -> None:
    notices = notices_for(
        event("resolved"), WEDNESDAY_NOON, settings(), can_page={"oncall", "cto"}, paged={"oncall"}
    )
    assert [(n.audience, n.kind) for n in notices] == [
        ("devops", "resolved"),
        ("oncall", "resolved"),
    ]


def test_without_a_routing_key_the_devops_notice_says_nobody_was_paged() -> None:
    (devops,) = notices_for(event(), WEDNESDAY_NIGHT, settings(), can_page=(), paged=())
    assert "no PagerDuty routing key for oncall, cto, not paged" in devops.summary
