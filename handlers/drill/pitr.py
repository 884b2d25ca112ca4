"""The drill's real point-in-time restore: pgBackRest, WAL replay, proven row by row.

A second throwaway cluster archives WAL (``archive_mode = on``) to a pgBackRest repository
(in the drill's folder when the server's OS user can write there). After a full backup a
writer inserts ``clock_timestamp()`` rows steadily while the problematic migration is
applied (its start recorded in the audit log the way ``rollbot migrate`` records it) and
rows are corrupted; then PITR runs as a real incident with the default restore point, one
second before the migration started. The report shows every row up to the target present
(count and checksum), none after it, the pre-migration schema back, and each phase's time.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import sql

from bot.config import EnvironmentConfig
from handlers.drill.dataset import create_tables, fill
from handlers.drill.timing import MethodOutcome
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.pgbackrest.restore_point import choose_target
from providers.pgbackrest.throwaway import ArchivingCluster, server_user
from providers.pgbackrest.tool import available
from providers.postgres.catalog import describe_schema, diff_schemas
from providers.postgres.checksums import table_checksums
from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.conn import connect

TICKS = "drill_pitr"  # the writer's schema, outside the compared schema
DB = "shop_pitr"
MAX_BYTES = 20_000_000  # pgBackRest's part stays in tens of seconds whatever --size says
BEFORE_SECONDS, AFTER_SECONDS = 2.5, 1.0
PHASES = (("restore", "restore"), ("wal_replay", "WAL replay"), ("verify", "verify"),
          ("switch", "switch"))  # fmt: skip


def unavailable_reason() -> str | None:
    return None if available() else "pgbackrest is not installed (apt-get install -y pgbackrest)"


def _reachable_by_server(folder: Path) -> bool:
    """Can the server's OS user write ``folder``'s parent (archive-push runs as that user)?"""
    argv = ["test", "-w", str(folder.parent), "-a", "-x", str(folder.parent)]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", server_user(), "--", *argv]
    return subprocess.run(argv, check=False).returncode == 0


class Writer:
    """One row every 20 ms, in its own connection, until stopped."""

    def __init__(self, url: str) -> None:
        import threading

        self.url, self._stop = url, threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-writer", daemon=True)

    def _run(self) -> None:
        with connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                conn.execute(f"INSERT INTO {TICKS}.ticks (written_at) VALUES (clock_timestamp())")
                self._stop.wait(0.02)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class PitrPractice:
    """Owns the archiving cluster; the ``Drill`` calls ``environment`` then ``run``."""

    drill: Any  # handlers.drill.runner.Drill (imported lazily: it imports this module)
    arch: ArchivingCluster | None = None

    def start(self) -> None:
        from handlers.drill.runner import timed

        drill = self.drill
        repo = drill.output / "pgbackrest-repo"
        if not _reachable_by_server(repo):
            drill.result.notes.append(
                f"the pgBackRest repository is in the throwaway cluster's folder: the server's "
                f"OS user ({server_user()}) cannot write {repo.parent}"
            )
            repo = None
        root = drill.output / "postgres-pitr" if drill.options.keep else None
        self.arch = ArchivingCluster(ThrowawayCluster(root=root), repo=repo)
        with timed(drill.result.setup, "start a WAL-archiving PostgreSQL + pgBackRest stanza"):
            self.arch.start()

    def environment(self, var: str) -> EnvironmentConfig:
        assert self.arch is not None
        os.environ[var] = self.arch.cluster.url(DB)
        return EnvironmentConfig(
            name="pitr",
            tier="production",
            database_url_env=var,
            backups=str(self.drill.backups / "pitr"),
            pitr=self.arch.pitr(),
        )

    def stop(self) -> None:
        if self.arch is not None:
            self.arch.stop()

    # ---------------------------------------------------------------- the practice
    def _build(self, outcome: MethodOutcome) -> tuple[str, Any]:
        from handlers.drill.runner import timed

        drill, arch = self.drill, self.arch
        assert arch is not None and drill.baseline is not None
        url = arch.cluster.create_database(DB)
        journal = read_journal(drill._folder())
        size = min(drill.options.size_bytes, MAX_BYTES)
        with timed(outcome.setup, f"migrations and about {size / 1e6:,.0f} MB of data"):
            apply_migrations(url, journal, upto=journal.entries[-2].idx)
            with connect(url, autocommit=True) as conn:
                if drill.baseline.data_schema != "public":
                    create_tables(conn, drill.baseline.data_schema)
                conn.execute(f"CREATE SCHEMA {TICKS}")
                conn.execute(
                    f"CREATE TABLE {TICKS}.ticks (id bigserial PRIMARY KEY, "
                    "written_at timestamptz NOT NULL)"
                )
            fill(url, size, schema=drill.baseline.data_schema)
        with connect(url) as conn:
            checksums = table_checksums(conn, drill.baseline.schema.schemas)
        with timed(outcome.setup, "full pgBackRest backup"):
            arch.backup("full")
        return url, checksums

    def _break(self, outcome: MethodOutcome, url: str) -> None:
        """The writer runs through the migration and the corruption."""
        from handlers.drill.runner import timed

        drill = self.drill
        schema = sql.Identifier(drill.baseline.data_schema)
        with timed(outcome.setup, "steady writer, problematic migration, corruption"), Writer(url):
            drill._pre_deploy_snapshot(outcome, "pitr", url)  # as rollbot migrate takes one
            time.sleep(BEFORE_SECONDS)  # rows before the restore point, after the backup
            drill.runtime.bot.note(
                None, "drill", "migration", f"Migration started: {drill.result.problematic}"
            )
            drill._apply_problematic(outcome, url)
            with connect(url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("UPDATE {}.orders SET total_cents = -1 WHERE id % 3 = 0").format(schema)
                )
            time.sleep(AFTER_SECONDS)
        with timed(outcome.setup, "archive the WAL past the restore point"):
            self.arch.archive_now()  # type: ignore[union-attr]

    def run(self, outcome: MethodOutcome) -> None:
        drill = self.drill
        url, checksums = self._build(outcome)
        self._break(outcome, url)
        env = drill.runtime.settings.environment("pitr")
        target, why = choose_target(drill.runtime.settings, env, None)
        expected = ticks(url, target)
        done = drill.incident(outcome, ["data_corruption"])
        restore = next((s for s in done.steps if s.kind == "pgbackrest.restore"), None)
        if restore is None or restore.params.get("target") != target.isoformat():
            outcome.problems.append(f"the plan did not pin the default restore point ({why})")
        if outcome.incident_state != "verifying":
            return
        self._check(outcome, url, target, expected, checksums)
        self._phases(outcome, done)
        outcome.note = (
            f"pgBackRest restored backup set {restore.params.get('backup_set')} and replayed "
            f"WAL to {target:%H:%M:%S.%f} UTC ({why})"
        )

    def _check(
        self,
        outcome: MethodOutcome,
        url: str,
        target: datetime,
        expected: tuple[int, int, int],
        checksums: Any,
    ) -> None:
        from handlers.drill.runner import check_head

        drill = self.drill
        count, checksum, after = ticks(url, target)
        if (count, checksum) == expected[:2] and count > 0:
            outcome.checks.append(
                f"all {count} rows written up to the restore point are present "
                f"(count and checksum equal); 0 missing"
            )
        else:
            outcome.problems.append(
                f"rows up to the restore point: {count} (checksum {checksum}) after, "
                f"{expected[0]} (checksum {expected[1]}) before"
            )
        if after == 0 and expected[2] > 0:
            outcome.checks.append(
                f"0 of the {expected[2]} rows written after the restore point are present"
            )
        else:
            outcome.problems.append(f"{after} rows written after the restore point are present")
        with connect(url) as conn:
            now = describe_schema(conn, schemas=None, exclude=("drizzle", TICKS))
            same = table_checksums(conn, drill.baseline.schema.schemas) == checksums
        diff = diff_schemas(drill.baseline.schema, now, ("pre-migration", "after"))
        if diff:
            outcome.problems += [f"schema differs from the pre-migration schema: {d}" for d in diff]
        else:
            outcome.checks.append("the pre-migration schema is back")
        if same:
            outcome.checks.append("the corrupted rows are back (table checksums as before)")
        else:
            outcome.problems.append("table checksums differ from before the migration")
        check_head(url, read_journal(drill._folder()), drill.baseline.head, outcome)

    def _phases(self, outcome: MethodOutcome, done: Any) -> None:
        durations: dict[str, float] = {}
        for step in done.steps:
            durations.update((step.result or {}).get("durations") or {})
        for step in done.steps:
            result = step.result or {}
            deep = [ln for ln in result.get("lines") or [] if ln.startswith("deep verify")]
            deep += (result.get("deep_verify") or [])[:1]
            outcome.checks += [f"{step.title}: {ln}" for ln in deep]
        outcome.checks.append(
            "phase times: "
            + ", ".join(f"{label} {durations.get(key, 0):.1f}s" for key, label in PHASES)
        )


def ticks(url: str, target: datetime) -> tuple[int, int, int]:
    """Rows up to ``target`` (count, order-independent checksum) and rows after it."""
    with connect(url) as conn:
        row = conn.execute(
            f"SELECT count(*) FILTER (WHERE written_at <= %(t)s), "
            f"coalesce(sum(hashtextextended(t::text, 0)) FILTER (WHERE written_at <= %(t)s), 0), "
            f"count(*) FILTER (WHERE written_at > %(t)s) FROM {TICKS}.ticks t",
            {"t": target},
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])
