"""The database side of the fake Neon API: every branch is one real database.

A branch's database lives on the throwaway cluster as ``neon_<branch id>`` (dashes
become underscores). Its point-in-time history is a list of *checkpoints*: a template
database copied at the branch's creation, plus one per ``NeonApiServer.checkpoint()``.

History rule: the state of a branch at time T (or LSN L) is the newest checkpoint taken
at or before T (L), even when T is after the newest one: the fake cannot see writes, so
writes made since the newest checkpoint are not in any point of the history. A test
that wants a later point in time takes a checkpoint; "now" (no T) is the current database.

``CREATE DATABASE ... TEMPLATE`` refuses while anyone is connected to the template, so a
copy first waits a short grace period for those sessions to leave, then ends them with
``pg_terminate_backend`` (as Neon breaks connections when it restores a branch).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from providers.postgres.cluster import ThrowawayCluster
from tests.neon_api.resources import BranchRecord, Checkpoint

COPY_ATTEMPTS = 3


def checkpoint_at(
    branch: BranchRecord, *, at: datetime | None = None, lsn: int | None = None
) -> Checkpoint | None:
    """The checkpoint holding ``branch``'s state at ``at`` or ``lsn`` by the history rule;
    None means the current database (no point given, or no checkpoint yet).

    Callers refuse points before the first checkpoint first.
    """
    if (at is None and lsn is None) or not branch.checkpoints:
        return None

    def key(c: Checkpoint) -> datetime | int:
        return c.at if at is not None else c.lsn

    point: Any = at if at is not None else lsn
    older = [c for c in branch.checkpoints if key(c) <= point]
    return older[-1] if older else branch.checkpoints[0]


def physical_name(kind: str, branch_id: str, suffix: str = "") -> str:
    """``neon_br_aged_salad_637688`` for the branch, ``neon_ck_…_3`` for its checkpoints."""
    core = branch_id.removeprefix("br-").replace("-", "_")
    return f"neon_{kind}_{core}{suffix}"


class Databases:
    """CREATE/COPY/RENAME/DROP DATABASE on the cluster through one admin connection."""

    def __init__(self, cluster: ThrowawayCluster, grace_seconds: float = 0.5) -> None:
        self.cluster = cluster
        self.grace_seconds = grace_seconds
        self._conn: psycopg.Connection | None = None
        self.made: set[str] = set()  # every database this object created and did not drop

    def _execute(self, query: sql.Composable | str, params: tuple = ()) -> list[tuple]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.cluster.url(), autocommit=True)
        cur = self._conn.execute(query, params)
        return cur.fetchall() if cur.description else []

    def drop_all(self) -> None:
        """Drop what this object made (even after a half-done restore), then disconnect."""
        for name in sorted(self.made):
            self.drop(name)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def exists(self, name: str) -> bool:
        return bool(self._execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)))

    def sessions(self, name: str) -> int:
        rows = self._execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        return int(rows[0][0])

    def terminate(self, name: str) -> None:
        """End every session on ``name`` (ours is on ``postgres``, never on a branch)."""
        self._execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )

    def _clear(self, name: str) -> None:
        """Give the sessions on ``name`` a grace period to leave, then end them."""
        deadline = time.monotonic() + self.grace_seconds
        while self.sessions(name) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.sessions(name):
            self.terminate(name)

    def create_empty(self, name: str) -> None:
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.made.add(name)

    def copy(self, template: str, name: str) -> None:
        """``name`` becomes a copy of ``template``; sessions on the template are ended if needed."""
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
        self._clear(template)
        for attempt in range(COPY_ATTEMPTS):
            try:
                self._execute(query)
                self.made.add(name)
                return
            except psycopg.errors.ObjectInUse:
                if attempt == COPY_ATTEMPTS - 1:
                    raise
                self.terminate(template)

    def rename(self, old: str, new: str) -> None:
        self._clear(old)
        self.terminate(old)
        self._execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(old), sql.Identifier(new)
            )
        )
        self.made.discard(old)
        self.made.add(new)

    def drop(self, name: str) -> None:
        with contextlib.suppress(psycopg.OperationalError):
            self._execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self.made.discard(name)

    def dump_schema(self, name: str) -> str:
        """``pg_dump --schema-only`` with the cluster's own pg_dump, minus per-run noise.

        pg_dump 15.14+ writes ``\\restrict <random key>`` lines that differ on every run.
        """
        c = self.cluster
        argv = [str(c.bindir / "pg_dump"), "--schema-only", "-h", "127.0.0.1"]
        argv += ["-p", str(c.port), "-U", c.user, "-d", name]
        env = os.environ | {"PGPASSWORD": c.password, "PGCONNECT_TIMEOUT": "10"}
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"pg_dump of {name} failed: {out.stderr.strip()}")
        noise = ("\\restrict", "\\unrestrict")
        return "".join(
            line for line in out.stdout.splitlines(keepends=True) if not line.startswith(noise)
        )
