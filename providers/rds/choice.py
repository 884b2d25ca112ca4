"""The restore point people chose: a time (``before``), or the latest restorable time.

Never a silent default: without a choice the plan says so and the run refuses, because
"latest" on a corrupted database restores the corruption. The card's date picker and its
list (which offers "latest") draw the plan up again with the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.errors import RollbotError
from providers.rds.window import Window, when

LATEST = "latest"


@dataclass(frozen=True)
class RestorePoint:
    moment: datetime | None  # None with latest, or when nothing was chosen
    latest: bool

    @property
    def chosen(self) -> bool:
        return self.latest or self.moment is not None

    def text(self, window: Window | None = None) -> str:
        if self.latest:
            now = f" (now {when(window.latest)})" if window else ""
            return f"the latest restorable time{now}"
        if self.moment is not None:
            return when(self.moment)
        return "not chosen yet"

    def require(self) -> None:
        if not self.chosen:
            raise RollbotError(
                "no restore point was chosen: pick a time (the card's date picker, or `rollbot "
                "plan INC pitr --restore-to 2026-12-02T10:30:00Z`) or 'latest restorable time'"
            )


def parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RollbotError(f"restore time {value[:40]!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise RollbotError(f"restore time {value!r} has no time zone (add Z or +00:00)")
    return moment.astimezone(UTC)


def restore_point(snapshot: str | None, before: str | None) -> RestorePoint:
    """From the step's options; both a time and "latest" is refused, as AWS would. A time
    picked from the card's list (its chosen entry) arrives as ``snapshot``: it is a time."""
    if snapshot not in (None, "", LATEST):
        try:
            picked = parse_time(str(snapshot))
        except RollbotError:
            raise RollbotError(
                f"{snapshot!r} is not a restore point on RDS: choose a restore time, or "
                f"{LATEST!r} for the latest restorable time"
            ) from None
        if before and parse_time(before) != picked:
            raise RollbotError("two different restore times were given: choose one")
        return RestorePoint(picked, False)
    latest = snapshot == LATEST
    if latest and before:
        raise RollbotError(
            "choose either a restore time or the latest restorable time, not both "
            "(RDS takes RestoreTime or UseLatestRestorableTime, never both)"
        )
    return RestorePoint(parse_time(before) if before else None, latest)
