"""Picking what a restore restores: another snapshot, or a restore time.

The plan a person approves names exactly one snapshot; changing it draws the plan
up again (``Rollbot.choose_method`` with the new options), so earlier approvals,
bound to the old plan's hash, no longer count. Times people type are read in the
team's time zone (``[business_hours] timezone``) unless they carry their own offset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.errors import RollbotError

# into_new: restore into a new branch or instance and switch to it, rather than in place.
RESTORE_FLAGS = ("accept_other_source", "no_owner", "no_acl", "into_new", "in_place")


def parse_restore_time(text: str, timezone: str) -> datetime:
    """``2026-12-02 14:30`` (team time) or ``2026-12-02T14:30:00Z`` -> an aware datetime."""
    cleaned = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise RollbotError(
            f"restore time {text.strip()[:40]!r} is not a time like 2026-12-02 14:30 "
            f"({timezone}) or 2026-12-02T14:30:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(timezone))


def restore_options(
    current: dict[str, Any], snapshot: str | None, restore_to: datetime | None, **flags: bool
) -> dict[str, Any]:
    """The method options for a re-plan: a picked snapshot and a restore time exclude each
    other; flags not given keep their current value."""
    options = {k: bool(current.get(k)) for k in RESTORE_FLAGS}
    options.update({k: v for k, v in flags.items() if k in RESTORE_FLAGS})
    if snapshot:
        options["snapshot"] = snapshot
    elif restore_to is not None:
        options["restore_to"] = restore_to.isoformat()
    else:
        options["snapshot"] = current.get("snapshot")
        options["restore_to"] = current.get("before")
    return options
