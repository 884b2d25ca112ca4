"""When the post-mortem meets: the first business-hours slot at or after ``now + delay``.

Business hours are the team's (``[business_hours]``: time zone, days, start and end, holidays).
A slot starts on a business day, not before the day's start, on the quarter-hour grid of the
team's wall clock (``granularity``), and the whole meeting fits before the day's end; a slot
that would cross the end moves to the next business day's start. Wall times are built per
day with :mod:`zoneinfo` and compared as instants, so a daylight-saving switch (a 23- or
25-hour day) gives the right UTC time. Pure: no clock, no store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.config import WEEKDAYS, BusinessHoursConfig
from bot.errors import RollbotError

DEFAULT_GRANULARITY = timedelta(minutes=15)
SEARCH_DAYS = 3 * 366  # holidays and short weeks never push a slot further than this


@dataclass(frozen=True)
class MeetingSlot:
    """A meeting's start and end, as aware UTC datetimes, and the zone it was chosen in."""

    start: datetime
    end: datetime
    timezone: str

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(ZoneInfo(self.timezone))

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(ZoneInfo(self.timezone))


def is_business_day(day: date, hours: BusinessHoursConfig) -> bool:
    """A day listed in ``days`` that is not one of the ``holidays``."""
    return WEEKDAYS[day.weekday()] in hours.days and day not in hours.holidays


def _wall(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) the team's wall clock reads ``at`` on ``day``.

    A wall time skipped by a spring-forward switch is read as the instant just after the
    gap (zoneinfo's ``fold=0`` reading, normalised through UTC)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _round_up(moment: datetime, zone: ZoneInfo, granularity: timedelta) -> datetime:
    """``moment`` (UTC) moved up to the next mark of the team's wall-clock grid."""
    local = moment.astimezone(zone)
    since_midnight = timedelta(
        hours=local.hour,
        minutes=local.minute,
        seconds=local.second,
        microseconds=local.microsecond,
    )
    marks = -(-since_midnight // granularity)  # ceiling division
    rounded = marks * granularity
    if rounded >= timedelta(days=1):
        return _wall(local.date() + timedelta(days=1), time(0, 0), zone)
    wall = (datetime.min + rounded).time()
    candidate = _wall(local.date(), wall, zone)
    # The repeated hour of a fall-back switch: never earlier than the moment itself.
    while candidate < moment:
        candidate += granularity
    return candidate


def first_slot(
    now: datetime,
    hours: BusinessHoursConfig,
    *,
    delay: timedelta = timedelta(days=2),
    length: timedelta = timedelta(minutes=60),
    granularity: timedelta = DEFAULT_GRANULARITY,
) -> MeetingSlot:
    """The first slot of ``length`` inside business hours starting at or after ``now + delay``.

    ``now`` must be timezone-aware. RollbotError when the meeting cannot fit in a business
    day, or no business day comes within :data:`SEARCH_DAYS`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if length <= timedelta(0):
        raise RollbotError("the meeting length must be positive")
    if delay < timedelta(0):
        raise RollbotError("the delay must not be negative")
    if granularity <= timedelta(0) or timedelta(days=1) % granularity:
        raise ValueError("granularity must divide a day")
    zone = ZoneInfo(hours.timezone)
    earliest = (now + delay).astimezone(UTC)
    day = earliest.astimezone(zone).date()
    for _ in range(SEARCH_DAYS):
        if is_business_day(day, hours):
            opens, closes = _wall(day, hours.start, zone), _wall(day, hours.end, zone)
            start = opens if earliest <= opens else _round_up(earliest, zone, granularity)
            if start + length <= closes:
                return MeetingSlot(start, start + length, hours.timezone)
        day += timedelta(days=1)
    minutes = int(length.total_seconds() // 60)
    raise RollbotError(
        f"no {minutes}-minute slot in business hours ({hours.start:%H:%M}-{hours.end:%H:%M} "
        f"{hours.timezone}, {', '.join(hours.days) or 'no days'}) within {SEARCH_DAYS} days "
        "of the delay; check [business_hours] or use a shorter meeting"
    )
