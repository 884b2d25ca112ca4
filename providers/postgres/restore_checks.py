"""Is this the right snapshot for this target? Checked at plan time and again at run time.

A restore of the wrong snapshot is worse than no restore: production became a one-table
database when a snapshot of another database sat in its backups folder. So the plan
names the snapshot's source, its size against the target's, and its age, and refuses
unless a person confirms explicitly:

* a snapshot of *another database* or *another server* (name and ``pg_control_system()``
  identifier recorded in the manifest): option ``accept_other_source``;
* a snapshot owned by, or granting to, roles the target server lacks: ``pg_restore``
  would fail half-way, after the safety snapshot; the ways out are to create the roles
  (``<snapshot>.roles.sql`` has them, without passwords) or option ``no_owner`` +
  ``no_acl`` (objects then belong to the restoring user and carry no grants).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from bot.errors import ProviderError
from providers.postgres.provenance import data_size, missing_roles, system_identifier
from providers.postgres.snapshot import Snapshot, human_size

SMALL_RATIO = 0.1  # a snapshot under a tenth of the target's size is a loud warning


class RestoreRefusedError(ProviderError):
    """The snapshot does not fit the target without an explicit option."""


@dataclass(frozen=True)
class RestoreOptions:
    """Choices a person makes explicitly; each one is in the plan they approve."""

    accept_other_source: bool = False
    no_owner: bool = False
    no_acl: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RestoreOptions:
        return cls(
            **{k: bool(params.get(k)) for k in ("accept_other_source", "no_owner", "no_acl")}
        )

    def pg_restore_args(self) -> list[str]:
        return [*(["--no-owner"] if self.no_owner else []), *(["--no-acl"] if self.no_acl else [])]


@dataclass
class SourceCheck:
    """What the plan says about where the snapshot comes from and what it needs."""

    source_database: str | None
    target_database: str
    other_server: bool | None  # None: unknown (no identifier on one side)
    missing_roles: list[str]
    snapshot_size: int
    source_data: int | None  # bytes of the source's tables when the snapshot was taken
    target_size: int
    target_data: int
    age_seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def other_database(self) -> bool:
        return self.source_database is not None and self.source_database != self.target_database

    def lines(self, options: RestoreOptions) -> list[str]:
        source = self.source_database or "unknown (no manifest)"
        was = f" of {human_size(self.source_data)} of tables" if self.source_data else ""
        out = [
            f"Snapshot of database {source}: {human_size(self.snapshot_size)} dump{was}, taken "
            f"{_age(self.age_seconds)} ago; the target {self.target_database} is "
            f"{human_size(self.target_size)} now ({human_size(self.target_data)} of tables)"
        ]
        if options.accept_other_source and (self.other_database or self.other_server):
            out.append(f"*CONFIRMED: this restores a snapshot of {self._otherness()}*")
        if options.no_owner or options.no_acl:
            out.append(
                "*Objects restored without their owners and grants (no_owner/no_acl): they "
                "will belong to the restoring user*"
            )
        return out + [f"*WARNING: {w}*" for w in self.warnings]

    def _otherness(self) -> str:
        parts = []
        if self.other_database:
            parts.append(f"ANOTHER DATABASE ({self.source_database}, not {self.target_database})")
        if self.other_server:
            parts.append("ANOTHER SERVER (its system identifier differs)")
        return " and ".join(parts)

    def refuse_unless(self, options: RestoreOptions, snapshot: str) -> None:
        """Raise RestoreRefusedError naming the problem and the way out."""
        if (self.other_database or self.other_server) and not options.accept_other_source:
            raise RestoreRefusedError(
                f"snapshot {snapshot} is a snapshot of {self._otherness()}; restoring it needs "
                "the explicit option accept_other_source (CLI --accept-other-source), which the "
                "plan then states"
            )
        if self.missing_roles and not (options.no_owner and options.no_acl):
            raise RestoreRefusedError(
                f"snapshot {snapshot} needs role(s) this server lacks: "
                f"{', '.join(self.missing_roles)}; create them first (their definitions, "
                f"without passwords, are in {snapshot}.roles.sql), or restore with the options "
                "no_owner and no_acl (CLI --no-owner --no-acl: objects then belong to the "
                "restoring user, without grants)"
            )


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} days"


def check_source(
    conn: psycopg.Connection, snap: Snapshot, now: datetime | None = None
) -> SourceCheck:
    """Compare ``snap``'s manifest with the target ``conn`` is connected to (read only)."""
    m = snap.manifest or {}
    row = conn.execute("SELECT current_database(), pg_database_size(current_database())").fetchone()
    assert row is not None
    target_db, target_size, target_data = str(row[0]), int(row[1]), data_size(conn)
    ours, theirs = system_identifier(conn), m.get("system_identifier")
    check = SourceCheck(
        source_database=m.get("database"),
        target_database=target_db,
        other_server=None if not (ours and theirs) else str(ours) != str(theirs),
        missing_roles=missing_roles(conn, list(m.get("roles") or [])),
        snapshot_size=snap.size,
        source_data=m.get("data_size"),
        target_size=target_size,
        target_data=target_data,
        age_seconds=((now or datetime.now(UTC)) - snap.created_at).total_seconds(),
    )
    if snap.manifest is None:
        check.warnings.append("no manifest: its source database and roles cannot be checked")
    compared = check.source_data if check.source_data is not None else snap.size
    if target_data and compared < SMALL_RATIO * target_data:
        check.warnings.append(
            f"the snapshot's tables ({human_size(compared)}) are under a tenth of the "
            f"target's ({human_size(target_data)}): is it the right snapshot?"
        )
    return check
