"""The restore window: the earliest and latest moment RDS can restore a source to.

AWS does not refuse a time outside it until the restore call, and moto never does: rollbot
checks it when the plan is made (and again just before sending), so a bad time is refused
before anything changes, with the window in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.errors import RollbotError
from providers.rds.client import RdsClient


def utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


@dataclass(frozen=True)
class Window:
    earliest: datetime
    latest: datetime
    source: str  # what the earliest time was read from, for the plan

    def text(self) -> str:
        return f"{when(self.earliest)} to {when(self.latest)}"

    def check(self, moment: datetime, now: datetime | None = None) -> None:
        """Refuse a time RDS cannot restore to: in the future, or outside the window."""
        now = now or datetime.now(UTC)
        if moment > now:
            raise RollbotError(
                f"restore time {when(moment)} is in the future; the restore window is {self.text()}"
            )
        if moment < self.earliest or moment > self.latest:
            raise RollbotError(
                f"restore time {when(moment)} is outside the restore window {self.text()}: "
                "choose a time inside it, or the latest restorable time"
            )


def instance_window(client: RdsClient, source: dict[str, Any]) -> Window:
    """From ``LatestRestorableTime`` and the automated backups' ``RestoreWindow``."""
    instance_id = source["DBInstanceIdentifier"]
    if not source.get("BackupRetentionPeriod"):
        raise RollbotError(
            f"RDS instance {instance_id} has automated backups off (backup retention 0 days): "
            "point-in-time restore is not possible; use pg_dump restore, or enable backups"
        )
    latest = utc(source.get("LatestRestorableTime"))
    if latest is None:
        raise RollbotError(
            f"RDS instance {instance_id} reports no latest restorable time yet (a new instance "
            "has none until its first backup): try again later, or use pg_dump restore"
        )
    earliest, origin = None, "the automated backups' restore window"
    for backup in client.automated_backups(instance_id):
        earliest = utc((backup.get("RestoreWindow") or {}).get("EarliestTime")) or earliest
    if earliest is None:  # no window reported: nothing older than the instance itself
        created = utc(source.get("InstanceCreateTime"))
        retention = latest - timedelta(days=int(source["BackupRetentionPeriod"]))
        earliest = max(created, retention) if created else retention
        origin = "the instance's creation time and backup retention: RDS reported no window"
    return Window(earliest, latest, origin)


def cluster_window(cluster: dict[str, Any]) -> Window:
    """From the cluster's ``EarliestRestorableTime`` / ``LatestRestorableTime``."""
    earliest = utc(cluster.get("EarliestRestorableTime"))
    latest = utc(cluster.get("LatestRestorableTime"))
    if earliest is None or latest is None:
        raise RollbotError(
            f"Aurora cluster {cluster['DBClusterIdentifier']} reports no restore window "
            "(backups not yet taken?): try again later, or use pg_dump restore"
        )
    return Window(earliest, latest, "the cluster's restorable times")
