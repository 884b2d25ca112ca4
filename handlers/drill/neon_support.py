"""The parts of the Neon drill that are not the incidents: the ledger of the branches it
makes (and their clean-up), the drill migration, the probe table it checks, and the clock.

Clean-up is the part that must never be skipped: the drill works on throwaway branches of
a real project, and a forgotten branch costs storage and confuses the next person who
lists the project's branches. Neon refuses to delete a branch that has children, so the
ledger deletes leaves first, and it also takes every descendant of what it recorded: a
restore with ``preserve_under_name`` moves the restored branch's children to the
preserved branch.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from bot.errors import RollbotError
from bot.redact import redact
from providers.drizzle.apply import TrackingTable
from providers.drizzle.journal import Journal, JournalEntry, read_journal
from providers.neon.client import Branch, NeonClient
from providers.postgres.conn import connect

PROBE = "rollbot_drill_probe"
PROBE_ROWS = 5
MIGRATION_NOTE = "written by the drill migration"
LATER_NOTE = "written after the restore point"
DRILL_TABLE = "rollbot_drill.__drizzle_migrations"  # when the environment has no folder
CLOCK_WAIT_SECONDS = 30.0

DRILL_SQL = f"""CREATE TABLE "{PROBE}" (
\t"id" serial PRIMARY KEY NOT NULL,
\t"note" text NOT NULL,
\t"written_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
INSERT INTO "{PROBE}" ("note") SELECT '{MIGRATION_NOTE}' FROM generate_series(1, {PROBE_ROWS});
"""
# Without a folder of its own the drill needs a head from before its migration for the
# verify to find after the branch rollback: a migration that changes nothing.
BASELINE_SQL = "SELECT 1;\n"


# ------------------------------------------------------------------ branches
@dataclass
class BranchLedger:
    """Every branch the drill created (by id) or caused (by name: a restore's preserved
    branch), and the clean-up that deletes them with their descendants."""

    client: NeonClient
    protected: frozenset[str]  # the environment's own branch: never deleted, never changed
    poll_seconds: float
    ids: dict[str, str] = field(default_factory=dict)  # id -> name
    names: set[str] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)  # names derived from a throwaway's

    def add(self, branch: Branch) -> None:
        self.ids[branch.id] = branch.name

    def add_name(self, name: str) -> None:
        self.names.add(name)

    def _ours(self, branch: Branch) -> bool:
        return (
            branch.id in self.ids
            or branch.name in self.names
            or any(branch.name.startswith(p) for p in self.prefixes)
        )

    def targets(self, branches: list[Branch]) -> dict[str, Branch]:
        """What clean-up deletes: our branches and all their descendants, never protected."""
        found = {b.id for b in branches if self._ours(b)}
        grew = True
        while grew:
            more = {b.id for b in branches if b.parent_id in found and b.id not in found}
            found |= more
            grew = bool(more)
        return {b.id: b for b in branches if b.id in found and b.id not in self.protected}

    def delete_all(self, echo: Callable[[str], None]) -> tuple[list[str], list[str]]:
        """Delete leaves first, each delete's operations awaited; (deleted, problems).

        Never raises: what cannot be deleted is a problem naming the branch.
        """
        deleted: list[str] = []
        reasons: dict[str, str] = {}
        try:
            while True:
                branches = self.client.list_branches()
                todo = {i: b for i, b in self.targets(branches).items() if i not in reasons}
                parents = {b.parent_id for b in branches}
                leaves = [b for b in todo.values() if b.id not in parents]
                if not leaves:
                    break
                for branch in leaves:
                    what = f"{branch.name} ({branch.id})"
                    if branch.default or branch.protected:
                        reasons[branch.id] = "it is the project's default or a protected branch"
                        continue
                    try:
                        self.client.wait(
                            self.client.delete_branch(branch.id), poll_seconds=self.poll_seconds
                        )
                    except Exception as exc:  # the others must still be tried
                        reasons[branch.id] = redact(exc)
                        continue
                    deleted.append(what)
                    echo(f"  deleted branch {what}")
            left = self.targets(self.client.list_branches())
        except Exception as exc:
            made = ", ".join(f"{n} ({i})" for i, n in self.ids.items()) or "none"
            return deleted, [
                f"clean-up could not finish ({redact(exc)}); check the project for the "
                f"drill's branches (it created {made})"
            ]
        problems = [
            f"branch {b.name} ({b.id}) was not deleted: "
            + reasons.get(b.id, "a branch below it could not be deleted")
            for b in left.values()
        ]
        return deleted, problems


# ------------------------------------------------------------------ the drill migration
@dataclass(frozen=True)
class DrillFolder:
    folder: Path
    table: str  # the tracking table the drill environment uses
    drill: JournalEntry  # the drill's migration
    baseline: JournalEntry | None  # applied before the pre-migration branch (no folder)

    def only(self, entry: JournalEntry) -> Journal:
        """The folder's journal cut to one entry: the drill applies only its own, never
        the environment's pending migrations."""
        journal = read_journal(self.folder)
        return Journal(journal.folder, journal.version, journal.dialect, (entry,))


def make_drill_folder(source: Path | None, table: str, dest: Path) -> DrillFolder:
    """A copy of ``source`` (or a new folder) with the drill's migration appended."""
    shutil.rmtree(dest, ignore_errors=True)
    if source is not None:
        read_journal(source)  # a broken folder is refused before any branch exists
        shutil.copytree(source, dest)
    else:
        (dest / "meta").mkdir(parents=True)
        data = {"version": "7", "dialect": "postgresql", "entries": []}
        (dest / "meta" / "_journal.json").write_text(json.dumps(data, indent=2) + "\n")
        table = DRILL_TABLE
    path = dest / "meta" / "_journal.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    newest = max((int(e["when"]) for e in data["entries"]), default=0)
    when = max(now_ms, newest + 2)

    def append(name: str, text: str, moment: int) -> None:
        idx = max((int(e.get("idx", i)) for i, e in enumerate(data["entries"])), default=-1) + 1
        tag = f"{idx:04d}_{name}"
        (dest / f"{tag}.sql").write_text(text, encoding="utf-8")
        data["entries"].append(
            {"idx": idx, "version": "7", "when": moment, "tag": tag, "breakpoints": True}
        )

    if source is None:
        append("rollbot_drill_baseline", BASELINE_SQL, when - 1)
    append("rollbot_drill", DRILL_SQL, when)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    journal = read_journal(dest)
    return DrillFolder(
        dest,
        table,
        journal.entries[-1],
        journal.entries[-2] if source is None else None,
    )


def head_tag(url: str, table: str, journal: Journal) -> str | None:
    """The newest applied migration's tag (by ``when``), None when nothing is applied."""
    by_when = {e.when: e.tag for e in journal.entries}
    tracking = TrackingTable.parse(table)
    with connect(url) as conn:
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (tracking.ident.as_string(conn),)
        ).fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute(
            sql.SQL("SELECT created_at FROM {} ORDER BY id DESC LIMIT 1").format(tracking.ident)
        ).fetchone()
    if row is None or row[0] is None:
        return None
    return by_when.get(int(row[0]), f"unknown (created_at {row[0]})")


# ------------------------------------------------------------------ the probe table
def probe_rows(url: str) -> dict[str, int] | None:
    """Rows of the probe table by note; None when the table does not exist."""
    with connect(url) as conn:
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (PROBE,)).fetchone()
        if not found or not found[0]:
            return None
        rows = conn.execute(
            sql.SQL("SELECT note, count(*) FROM {} GROUP BY note").format(sql.Identifier(PROBE))
        ).fetchall()
    return {str(note): int(n) for note, n in rows}


def write_later_rows(url: str) -> None:
    with connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} (note) SELECT %s FROM generate_series(1, %s)").format(
                sql.Identifier(PROBE)
            ),
            (LATER_NOTE, PROBE_ROWS),
        )


def server_version(url: str) -> str:
    with connect(url) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])


# ------------------------------------------------------------------ the clock
def restore_point(url: str) -> datetime:
    """A restore point by the database server's clock, read after the last commit, so the
    branch's state at it is what is committed now.

    Returns once the server's clock and ours have both moved past it: the next write is
    then after the point, and the point is not in the future for the pitr step's check.
    """
    with connect(url, autocommit=True) as conn:
        moment = conn.execute("SELECT clock_timestamp()").fetchone()[0].astimezone(UTC)
        deadline = time.monotonic() + CLOCK_WAIT_SECONDS
        while True:
            server_now = conn.execute("SELECT clock_timestamp()").fetchone()[0]
            if server_now > moment and datetime.now(UTC) > moment:
                return moment
            if time.monotonic() > deadline:
                raise RollbotError(
                    f"the database's clock is ahead of this machine's by more than "
                    f"{CLOCK_WAIT_SECONDS:g} s: a restore point it names would be in the future"
                )
            time.sleep(0.001)  # clock resolution: the next reading is a later microsecond
