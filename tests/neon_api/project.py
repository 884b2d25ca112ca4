"""The one project of the fake: its branches, operations and endpoints, and their effects.

Every method expects the caller to hold ``lock`` (the HTTP handlers and the test helpers
of ``NeonApiServer`` do). Database effects happen at once; only the operations'
reported status lags (see ``OperationRecord``).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from providers.postgres.cluster import ThrowawayCluster
from tests.neon_api.branches import Databases, checkpoint_at, physical_name
from tests.neon_api.resources import (
    BranchRecord,
    Checkpoint,
    EndpointRecord,
    OperationRecord,
    format_lsn,
    new_id,
    parse_lsn,
)

CODES = {400: "INVALID_REQUEST", 401: "UNAUTHORIZED", 404: "NOT_FOUND", 423: "LOCKED"}


class ApiError(Exception):
    """Answered as a GeneralError body with ``status``."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code if code is not None else CODES.get(status, "")


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Point:
    """A resolved point of a branch's history: the database holding it, and its LSN."""

    database: str
    lsn: int
    at: datetime | None


def utc_now() -> datetime:
    return datetime.now(UTC)


class NeonProject:
    def __init__(
        self,
        cluster: ThrowawayCluster,
        *,
        project_id: str,
        history_retention_seconds: int,
        op_polls: int,
        clock: Callable[[], datetime] = utc_now,
        grace_seconds: float = 0.5,
        seed: int | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.cluster = cluster
        self.db = Databases(cluster, grace_seconds)
        self.pg_version = cluster.major_version
        self.project_id = project_id
        self.retention = history_retention_seconds
        self.op_polls = op_polls
        self._clock = clock
        self._last = datetime.min.replace(tzinfo=UTC)
        self.rng = random.Random(seed)
        self._lsn = 0x1_500_000
        self.branches: dict[str, BranchRecord] = {}
        self.operations: dict[str, OperationRecord] = {}
        self.endpoints: dict[str, EndpointRecord] = {}
        self.failing_operations: list[str] = []
        self._checkpoints_made = 0
        self._blank: str | None = None
        self.created_at = self.now()

    def now(self) -> datetime:
        """The clock, made strictly increasing so checkpoints never share a time."""
        moment = self._clock().astimezone(UTC)
        self._last = max(moment, self._last + timedelta(microseconds=1))
        return self._last

    def next_lsn(self) -> int:
        self._lsn += self.rng.randrange(0x1000, 0x20000)
        return self._lsn

    def fresh_id(self, prefix: str) -> str:
        """An id no branch/endpoint has and whose database the cluster lacks (shared cluster)."""
        while True:
            candidate = new_id(prefix, self.rng)
            taken = candidate in self.branches or candidate in self.endpoints
            if not taken and not self.db.exists(physical_name(prefix, candidate)):
                return candidate

    # lookups

    def check_project(self, project_id: str) -> None:
        if project_id != self.project_id:
            raise ApiError(404, f"project {project_id} not found")

    def branch(self, branch_id: str) -> BranchRecord:
        found = self.branches.get(branch_id)
        if found is None:
            raise ApiError(404, f"branch {branch_id} not found")
        return found

    def default_branch(self) -> BranchRecord:
        return next(b for b in self.branches.values() if b.default)

    def children(self, branch_id: str) -> list[BranchRecord]:
        return [b for b in self.branches.values() if b.parent_id == branch_id]

    # operations

    def ensure_unlocked(self) -> None:
        if any(not op.done for op in self.operations.values()):
            raise ApiError(423, "project already has running operations")

    def new_operation(
        self, branch_id: str, action: str, endpoint_id: str | None = None
    ) -> OperationRecord:
        now = self.now()
        error = self.failing_operations.pop(0) if self.failing_operations else None
        op = OperationRecord(
            id=str(uuid.uuid4()),
            branch_id=branch_id,
            action=action,
            created_at=now,
            updated_at=now,
            remaining=self.op_polls,
            endpoint_id=endpoint_id,
            error=error,
            done=self.op_polls == 0,
        )
        self.operations[op.id] = op
        return op

    # history

    def _checkpoint_name(self, branch_id: str) -> str:
        self._checkpoints_made += 1
        return physical_name("ck", branch_id, f"_{self._checkpoints_made}")

    def add_checkpoint(self, branch: BranchRecord) -> Checkpoint:
        name = self._checkpoint_name(branch.id)
        self.db.copy(branch.database, name)
        point = Checkpoint(self.now(), self.next_lsn(), name)
        branch.checkpoints.append(point)
        return point

    def is_template(self, database: str) -> bool:
        """Checkpoint databases never change, so branches may share one."""
        in_use = (c.database for b in self.branches.values() for c in b.checkpoints)
        return database == self._blank or database in in_use

    def frozen(self, point: Point, owner_id: str) -> str:
        """A template database holding ``point``: its own if it is a checkpoint, else a copy."""
        if self.is_template(point.database):
            return point.database
        name = self._checkpoint_name(owner_id)
        self.db.copy(point.database, name)
        return name

    def blank(self) -> str:
        """The empty template every root branch starts from (one per server)."""
        if self._blank is None:
            self._blank = f"neon_blank_{uuid.uuid4().hex[:12]}"
            self.db.create_empty(self._blank)
        return self._blank

    def resolve(self, branch: BranchRecord, at: datetime | None, lsn: str | None) -> Point:
        """The database for ``branch`` at ``at``/``lsn``; 400 outside its history."""
        if at is not None and lsn is not None:
            raise ApiError(400, "give either a timestamp or an LSN, not both")
        if at is not None:
            return self._resolve_time(branch, at.astimezone(UTC))
        if lsn is not None:
            return self._resolve_lsn(branch, lsn)
        return Point(branch.database, self.next_lsn(), None)

    def _resolve_time(self, branch: BranchRecord, at: datetime) -> Point:
        now = self._clock().astimezone(UTC)
        if at > now:
            raise ApiError(400, f"timestamp {at.isoformat()} is in the future")
        if at < now - timedelta(seconds=self.retention):
            raise ApiError(
                400,
                f"timestamp {at.isoformat()} is outside the history retention window "
                f"({self.retention} seconds)",
            )
        if at < branch.created_at:
            raise ApiError(
                400,
                f"timestamp {at.isoformat()} is before branch {branch.id} was created",
            )
        found = checkpoint_at(branch, at=at)
        if found is None:
            return Point(branch.database, self.next_lsn(), at)
        return Point(found.database, found.lsn, at)

    def _resolve_lsn(self, branch: BranchRecord, text: str) -> Point:
        try:
            lsn = parse_lsn(text)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        if lsn > self._lsn:
            raise ApiError(400, f"LSN {text} is ahead of the branch's head")
        if branch.checkpoints and lsn < branch.checkpoints[0].lsn:
            raise ApiError(400, f"LSN {text} is before branch {branch.id} was created")
        found = checkpoint_at(branch, lsn=lsn)
        return Point(found.database if found else branch.database, lsn, None)

    # effects

    def spawn(
        self,
        name: str,
        *,
        parent: BranchRecord | None,
        point: Point | None,
        protected: bool = False,
    ) -> BranchRecord:
        """A new branch: a copy of ``point`` of ``parent``, or an empty root database.

        Its creation checkpoint is the template it was copied from, shared.
        """
        branch_id = self.fresh_id("br")
        now = self.now()
        record = BranchRecord(
            id=branch_id,
            name=name,
            database=physical_name("br", branch_id),
            created_at=now,
            updated_at=now,
            protected=protected,
        )
        if parent is None or point is None:
            template, lsn = self.blank(), self.next_lsn()
        else:
            template, lsn = self.frozen(point, branch_id), point.lsn
            record.parent_id = parent.id
            record.parent_timestamp = point.at or now
            record.parent_lsn = point.lsn
        self.db.copy(template, record.database)
        record.checkpoints.append(Checkpoint(now, lsn, template))
        self.branches[branch_id] = record
        if not any(b.default for b in self.branches.values()):
            record.default = True
        return record

    def add_endpoint(self, branch: BranchRecord, kind: str) -> EndpointRecord:
        endpoint = EndpointRecord(self.fresh_id("ep"), branch.id, kind, self.now())
        self.endpoints[endpoint.id] = endpoint
        branch.endpoint_ids.append(endpoint.id)
        return endpoint

    def drop(self, branch: BranchRecord) -> None:
        """Drop the branch's database, and its checkpoints no other branch shares."""
        self.db.drop(branch.database)
        del self.branches[branch.id]
        for checkpoint in branch.checkpoints:
            if not self.is_template(checkpoint.database):
                self.db.drop(checkpoint.database)
        for endpoint_id in branch.endpoint_ids:
            self.endpoints.pop(endpoint_id, None)

    def set_default(self, branch: BranchRecord) -> None:
        now = self.now()
        for other in self.branches.values():
            if other.default != (other is branch):
                other.default, other.updated_at = other is branch, now

    def restore(
        self, branch: BranchRecord, point: Point, preserve_under_name: str | None
    ) -> BranchRecord | None:
        """Replace ``branch``'s database by ``point``; keep the old one as a new branch if asked.

        The copy comes first, into a side database, so a failed copy changes nothing.
        """
        template = self.frozen(point, branch.id)
        staged = physical_name("br", branch.id, "_restoring")
        self.db.drop(staged)
        self.db.copy(template, staged)
        preserved = None
        if preserve_under_name:
            preserved = self._preserve(branch, preserve_under_name)
        else:
            self.db.drop(branch.database)
        self.db.rename(staged, branch.database)
        branch.updated_at = self.now()
        branch.checkpoints.append(Checkpoint(branch.updated_at, self.next_lsn(), template))
        return preserved

    def _preserve(self, branch: BranchRecord, name: str) -> BranchRecord:
        """The branch's current database becomes branch ``name``, which adopts its children."""
        preserved_id = self.fresh_id("br")
        database = physical_name("br", preserved_id)
        self.db.rename(branch.database, database)
        now = self.now()
        preserved = BranchRecord(
            id=preserved_id,
            name=name,
            database=database,
            created_at=now,
            updated_at=now,
            parent_id=branch.parent_id,
            parent_timestamp=branch.parent_timestamp,
            parent_lsn=branch.parent_lsn,
        )
        for child in self.children(branch.id):
            child.parent_id = preserved_id
        self.branches[preserved_id] = preserved
        frozen = self._checkpoint_name(preserved_id)
        self.db.copy(database, frozen)
        preserved.checkpoints.append(Checkpoint(now, self.next_lsn(), frozen))
        return preserved

    def close(self) -> None:
        """Drop every database the fake made: the session's cluster is shared."""
        self.branches.clear()
        self.db.drop_all()

    def head_lsn(self) -> str:
        return format_lsn(self._lsn)
