"""Can Cloud SQL clone the instance to this moment? Checked before anything is sent.

Point-in-time recovery needs ``settings.backupConfiguration.pointInTimeRecoveryEnabled``;
the window is the transaction logs kept (``transactionLogRetentionDays``, 1-7, Google's
default 7) back from now, and never before the instance was created.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.errors import RollbotError
from providers.cloudsql.models import Instance

DEFAULT_RETENTION_DAYS = 7


def parse_moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RollbotError(f"restore time {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise RollbotError(f"restore time {value!r} has no time zone (add Z or +00:00)")
    return moment.astimezone(UTC)


def retention_days(instance: Instance) -> int:
    return instance.log_retention_days or DEFAULT_RETENTION_DAYS


def earliest(instance: Instance, now: datetime) -> datetime:
    start = now - timedelta(days=retention_days(instance))
    return max(start, instance.created) if instance.created else start


def check_point_in_time(instance: Instance, moment: datetime, now: datetime | None = None) -> None:
    """Refuse what Cloud SQL cannot clone, saying why and what the window is."""
    now = now or datetime.now(UTC)
    if not instance.pitr_enabled:
        raise RollbotError(
            f"point-in-time recovery is not enabled on Cloud SQL instance {instance.name} "
            "(settings.backupConfiguration.pointInTimeRecoveryEnabled is false): restore a "
            "backup instead (option from_backup), or enable PITR for the future"
        )
    if moment > now:
        raise RollbotError(f"restore time {moment:%Y-%m-%d %H:%M:%S} UTC is in the future")
    first = earliest(instance, now)
    if moment < first:
        raise RollbotError(
            f"restore time {moment:%Y-%m-%d %H:%M:%S} UTC is outside the restore window of "
            f"{instance.name} ({retention_days(instance)} day(s) of transaction logs: "
            f"{first:%Y-%m-%d %H:%M:%S} UTC to now)"
        )
