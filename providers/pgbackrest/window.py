"""What pgBackRest can restore: its backup sets and the restorable window.

The window runs from the oldest backup's start to the newest WAL the live cluster archived
(``pg_stat_archiver.last_archived_time``: recovery to a time needs WAL past it). An archive
whose last attempt failed, or that fell behind the current WAL by more than a few segments
for longer than ``archive_lag_seconds``, is a warning: the window's end is not moving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.errors import RollbotError
from providers.postgres.conn import connect

SEGMENT_BYTES = 16 * 1024 * 1024
LAG_SEGMENTS = 3


@dataclass(frozen=True)
class BackupSet:
    label: str
    type: str  # full, diff, incr
    started: datetime
    stopped: datetime
    wal_start: str
    wal_stop: str
    size: int
    repo_size: int

    def line(self) -> str:
        return (
            f"{self.label} ({self.type}) {stamp(self.started)} -> {stamp(self.stopped)}, "
            f"{self.size / 1_000_000:,.1f} MB ({self.repo_size / 1_000_000:,.1f} MB in the repo), "
            f"WAL {self.wal_start}"
        )


@dataclass(frozen=True)
class Archiver:
    """``pg_stat_archiver`` of the live cluster, and its current WAL segment."""

    last_archived_wal: str | None
    last_archived_time: datetime | None
    last_failed_wal: str | None
    last_failed_time: datetime | None
    failed_count: int
    current_wal: str
    archive_mode: str


@dataclass
class Window:
    backups: list[BackupSet]
    archive_max: str | None
    archiver: Archiver | None
    warnings: list[str] = field(default_factory=list)

    @property
    def start(self) -> datetime | None:
        return self.backups[0].started if self.backups else None

    @property
    def end(self) -> datetime | None:
        return self.archiver.last_archived_time if self.archiver else None

    def lines(self) -> list[str]:
        out = [f"backups ({len(self.backups)}):"] + [f"  {b.line()}" for b in self.backups]
        if self.start and self.end:
            out.append(f"restorable window: {stamp(self.start)} -> {stamp(self.end)}")
        else:
            out.append("restorable window: none (no backup, or no WAL archived yet)")
        if self.archive_max:
            out.append(f"newest WAL in the repository: {self.archive_max}")
        return out + [f"WARNING: {w}" for w in self.warnings]

    def backup_for(self, target: datetime) -> BackupSet:
        """The newest backup set that finished before ``target`` (pgBackRest starts there)."""
        usable = [b for b in self.backups if b.stopped < target]
        if not usable:
            raise RollbotError(
                f"no pgBackRest backup finished before {stamp(target)} "
                f"(oldest: {stamp(self.start) if self.start else 'none'}); pick a later time"
            )
        return usable[-1]

    def check_target(self, target: datetime, now: datetime) -> None:
        """Refuse a target in the future or outside the window, saying what the window is."""
        if target > now:
            raise RollbotError(f"restore point {stamp(target)} is in the future")
        if self.start is None or self.end is None:
            raise RollbotError("nothing is restorable yet: no backup, or no WAL archived")
        if not self.start < target <= self.end:
            raise RollbotError(
                f"restore point {stamp(target)} is outside the restorable window "
                f"{stamp(self.start)} -> {stamp(self.end)}; pick a time inside it "
                "(--restore-to)"
            )
        self.backup_for(target)

    def wal_after(self, backup: BackupSet) -> tuple[int, int]:
        """Segments (and bytes) archived from the backup's start to the newest: the most
        WAL a restore from it replays."""
        if not self.archive_max:
            return 0, 0
        count = max(segment_number(self.archive_max) - segment_number(backup.wal_start) + 1, 0)
        return count, count * SEGMENT_BYTES


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def segment_number(wal: str) -> int:
    """A WAL file name's position in its timeline (16 MB segments)."""
    return int(wal[8:16], 16) * 0x100 + int(wal[16:24], 16)


def backups_of(info: dict[str, Any]) -> list[BackupSet]:
    out = []
    for b in info.get("backup") or []:
        if b.get("error"):
            continue
        stamps, archive, sizes = b["timestamp"], b.get("archive") or {}, b.get("info") or {}
        out.append(
            BackupSet(
                label=b["label"],
                type=b["type"],
                started=datetime.fromtimestamp(stamps["start"], UTC),
                stopped=datetime.fromtimestamp(stamps["stop"], UTC),
                wal_start=archive.get("start") or "",
                wal_stop=archive.get("stop") or "",
                size=int(sizes.get("size") or 0),
                repo_size=int((sizes.get("repository") or {}).get("size") or 0),
            )
        )
    return sorted(out, key=lambda b: b.started)


def read_archiver(url: str) -> Archiver:
    with connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT last_archived_wal, last_archived_time, last_failed_wal, last_failed_time, "
            "failed_count, pg_walfile_name(pg_current_wal_lsn()), current_setting('archive_mode') "
            "FROM pg_stat_archiver"
        ).fetchone()
    return Archiver(*row[:4], int(row[4]), str(row[5]), str(row[6]))  # type: ignore[index]


def archive_warnings(arch: Archiver, now: datetime, lag_seconds: int) -> list[str]:
    """Failing or lagging archiving, in words (empty when healthy)."""
    out = []
    if arch.archive_mode == "off":
        out.append("archive_mode is off on the live cluster: no WAL is archived, no PITR")
    failed_last = arch.last_failed_time and (
        arch.last_archived_time is None or arch.last_failed_time > arch.last_archived_time
    )
    if failed_last:
        out.append(
            f"WAL archiving is FAILING: {arch.last_failed_wal} failed at "
            f"{stamp(arch.last_failed_time)} ({arch.failed_count} failures); fix archive_command"
        )
    if arch.last_archived_wal and arch.last_archived_time:
        behind = segment_number(arch.current_wal) - segment_number(arch.last_archived_wal) - 1
        age = (now - arch.last_archived_time).total_seconds()
        if behind >= LAG_SEGMENTS and age > lag_seconds:
            out.append(
                f"WAL archiving is LAGGING: {behind} segments behind, last archived "
                f"{age:,.0f}s ago ({arch.last_archived_wal})"
            )
    elif arch.archive_mode != "off":
        out.append("no WAL has been archived yet")
    return out


def read_window(info: dict[str, Any], url: str | None, lag_seconds: int) -> Window:
    """The window from ``pgbackrest info`` and, when reachable, the live cluster's archiver."""
    archives = info.get("archive") or []
    archive_max = max((a.get("max") or "" for a in archives), default="") or None
    archiver = read_archiver(url) if url else None
    window = Window(backups_of(info), archive_max, archiver)
    if archiver is not None:
        window.warnings += archive_warnings(archiver, datetime.now(UTC), lag_seconds)
    if not window.backups:
        window.warnings.append(
            "the stanza has no backup yet: take one (rollbot snapshot --physical)"
        )
    return window
