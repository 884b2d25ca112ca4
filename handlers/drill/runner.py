"""The runbook's quarterly drill, unattended: break a database on purpose, practise each method.

Why through the incident core: the drill must exercise exactly what an on-call
person would run (plans, approvals, the executor, the audit trail), not a
parallel code path that could drift. Each method gets a fresh database cloned
from one generated template (``CREATE DATABASE ... TEMPLATE``), is broken the
way its scenario needs, runs as a real incident approved by ``drill-approver``,
and is then checked against what the method documents it may lose.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bot.config import ApprovalsConfig, EnvironmentConfig, Settings
from bot.errors import RollbotError
from bot.redact import redact
from bot.runbook import RUNBOOK
from handlers.drill.dataset import DATA_SCHEMA_FOR_TEAM_FOLDERS, DatasetResult, create_tables, fill
from handlers.drill.pitr import PitrPractice, unavailable_reason
from handlers.drill.timing import MethodOutcome, StepTiming, TimingSink
from handlers.runtime import Runtime, start_runtime
from providers.drizzle.apply import DEFAULT_TABLE, apply_migrations
from providers.drizzle.journal import Journal, read_journal
from providers.postgres.catalog import SchemaDescription, describe_schema, diff_schemas
from providers.postgres.checksums import TableChecksums, table_checksums
from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.conn import connect
from providers.postgres.snapshot import create_snapshot
from providers.postgres.triage import activity
from providers.storage import open_storage

EXAMPLE_MIGRATIONS = Path(__file__).resolve().parent / "example_migrations"
REQUESTER = "drill"
APPROVER = "drill-approver"
TEMPLATE_DB = "drill_template"
ROWS_AFTER_SNAPSHOT = 25
Echo = Callable[[str], None]


@dataclass(frozen=True)
class DrillOptions:
    size_bytes: int = 300_000_000
    migrations: Path | None = None
    output: Path = Path("drill-output")
    keep: bool = False


@dataclass
class Baseline:
    """The database before the problematic migration: what every method must get back to."""

    schema: SchemaDescription  # every schema but drizzle's tracking schema
    migrated_schema: SchemaDescription  # only what the migrations create (dev reset)
    checksums: TableChecksums
    data_schema: str
    head: str | None  # the newest applied migration before the problematic one


@dataclass
class DrillResult:
    started_at: datetime
    finished_at: datetime | None = None
    server_version: str = ""
    server_where: str = "throwaway, local"  # what the drill ran on, for the report
    migrations_folder: str = ""
    problematic: str = ""
    dataset: DatasetResult | None = None
    setup: list[StepTiming] = field(default_factory=list)
    outcomes: list[MethodOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output: Path = Path(".")

    @property
    def ok(self) -> bool:
        return bool(self.outcomes) and all(o.verified for o in self.outcomes)


@contextmanager
def timed(into: list[StepTiming], title: str, kind: str = "drill.setup") -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    except BaseException as exc:
        into.append(StepTiming(title, kind, time.monotonic() - started, False, redact(exc)))
        raise
    into.append(StepTiming(title, kind, time.monotonic() - started, True))


# ------------------------------------------------------------------ database helpers
def _admin(cluster: ThrowawayCluster) -> psycopg.Connection:
    return connect(cluster.url("postgres"), autocommit=True)


def clone_database(cluster: ThrowawayCluster, name: str) -> str:
    with _admin(cluster) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE_DB)
            )
        )
    return cluster.url(name)


def drop_databases_like(cluster: ThrowawayCluster, prefix: str) -> None:
    with _admin(cluster) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
            )
        ]
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _describe(url: str, exclude: tuple[str, ...] = ("drizzle",)) -> SchemaDescription:
    with connect(url) as conn:
        return describe_schema(conn, schemas=None, exclude=exclude)


def _checksums(url: str, schemas: tuple[str, ...]) -> TableChecksums:
    with connect(url) as conn:
        return table_checksums(conn, schemas)


def _head(url: str, journal: Journal) -> str | None:
    by_when = {e.when: e.tag for e in journal.entries}
    with connect(url) as conn:
        row = conn.execute(
            sql.SQL("SELECT created_at FROM {} ORDER BY created_at DESC LIMIT 1").format(
                sql.Identifier(*DEFAULT_TABLE.split("."))
            )
        ).fetchone()
    return None if row is None else by_when.get(int(row[0]), f"unknown ({row[0]})")


# ------------------------------------------------------------------ checks
def check_schema(url: str, expected: SchemaDescription, outcome: MethodOutcome) -> None:
    diff = diff_schemas(expected, _describe(url), ("pre-migration", "after"))
    if diff:
        outcome.problems += [f"schema differs from the pre-migration schema: {d}" for d in diff]
    else:
        outcome.checks.append(
            f"schema equals the pre-migration schema ({len(expected.tables)} tables)"
        )


def check_checksums(
    url: str, baseline: Baseline, outcome: MethodOutcome, what_is_lost: str
) -> None:
    after = _checksums(url, baseline.schema.schemas)
    expected = baseline.checksums
    bad = []
    for table in sorted(set(expected) | set(after)):
        if expected.get(table) == after.get(table):
            continue
        before_rows = expected[table][0] if table in expected else "no"
        after_rows = after[table][0] if table in after else "no"
        same = " (same count, different contents)" if before_rows == after_rows else ""
        bad.append(f"{table}: {before_rows} rows before, {after_rows} after{same}")
    if bad:
        outcome.problems += [f"table checksum differs: {b}" for b in bad]
    else:
        rows = sum(n for n, _ in after.values())
        outcome.checks.append(
            f"table checksums equal the pre-migration ones ({len(after)} tables, {rows:,} rows): "
            f"{what_is_lost}"
        )


def check_head(url: str, journal: Journal, expected: str | None, outcome: MethodOutcome) -> None:
    head = _head(url, journal)
    if head == expected:
        outcome.checks.append(f"migrations table head is {expected}")
    else:
        outcome.problems.append(f"migrations table head is {head}, expected {expected}")


# ------------------------------------------------------------------ the drill
class Drill:
    def __init__(self, options: DrillOptions, echo: Echo) -> None:
        self.options = options
        self.echo = echo
        self.output = options.output.resolve()
        self.work = self.output / "work"
        self.backups = self.output / "backups"
        self.result = DrillResult(started_at=datetime.now(UTC), output=self.output)
        self.cluster: ThrowawayCluster | None = None
        self.runtime: Runtime | None = None
        self.baseline: Baseline | None = None
        self._env_vars: list[str] = []
        self.pitr_practice: PitrPractice | None = None  # None: pgBackRest unavailable

    # -------------------------------------------------------------- setup
    def _folder(self) -> Path:
        folder = self.options.migrations or EXAMPLE_MIGRATIONS
        return folder.resolve()

    def _copy_folder(self, name: str, *, without_newest: bool = False) -> Path:
        dest = self.work / name / "migrations"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(self._folder(), dest)
        if without_newest:
            import json

            path = dest / "meta" / "_journal.json"
            data = json.loads(path.read_text())
            newest = data["entries"].pop()
            path.write_text(json.dumps(data, indent=2) + "\n")
            (dest / f"{newest['tag']}.sql").unlink(missing_ok=True)
        return dest

    def start_cluster(self) -> ThrowawayCluster:
        root = self.output / "postgres" if self.options.keep else None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        cluster = ThrowawayCluster(root=root)
        with timed(self.result.setup, "start a throwaway PostgreSQL"):
            cluster.start()
        self.cluster = cluster
        with _admin(cluster) as conn:
            self.result.server_version = str(conn.execute("SHOW server_version").fetchone()[0])
        self.echo(
            f"PostgreSQL {self.result.server_version} started on 127.0.0.1:{cluster.port} "
            f"({cluster.bindir})"
        )
        return cluster

    def build_template(self) -> None:
        assert self.cluster is not None
        folder = self._folder()
        journal = read_journal(folder)
        if not journal.entries:
            raise RollbotError(f"{folder}: the journal has no entries; nothing to practise on")
        problematic = journal.entries[-1]
        self.result.migrations_folder = str(folder)
        self.result.problematic = problematic.tag
        example = folder == EXAMPLE_MIGRATIONS.resolve()
        data_schema = "public" if example else DATA_SCHEMA_FOR_TEAM_FOLDERS
        url = self.cluster.create_database(TEMPLATE_DB)
        before = journal.entries[:-1]
        with timed(self.result.setup, f"apply {len(before)} migration(s) from {folder.name}"):
            if before:
                apply_migrations(url, journal, upto=before[-1].idx)
        if not example:
            with connect(url, autocommit=True) as conn:
                create_tables(conn, data_schema)
            self.result.notes.append(
                f"the team's folder is drilled with generated data in schema {data_schema!r} "
                "(the generator only knows the example's tables); the team's own tables keep "
                "what their migrations insert"
            )
        size_mb = self.options.size_bytes / 1_000_000
        self.echo(f"generating a realistic dataset of about {size_mb:,.0f} MB ...")
        with timed(self.result.setup, f"generate about {size_mb:,.0f} MB of users/orders/events"):
            self.result.dataset = fill(url, self.options.size_bytes, schema=data_schema)
        d = self.result.dataset
        self.echo(
            f"dataset: {d.users:,} users, {d.orders:,} orders, {d.events:,} events, "
            f"{d.bytes / 1_000_000:,.0f} MB in {d.seconds:.1f}s"
        )
        with timed(self.result.setup, "record the pre-migration schema and table checksums"):
            schema = _describe(url)
            migrated = schema if example else _describe(url, exclude=("drizzle", data_schema))
            self.baseline = Baseline(
                schema=schema,
                migrated_schema=migrated,
                checksums=_checksums(url, schema.schemas),
                data_schema=data_schema,
                head=before[-1].tag if before else None,
            )

    def _env(self, key: str, tier: str, **extra: Any) -> EnvironmentConfig:
        var = f"ROLLBOT_DRILL_{key.upper().replace('-', '_')}_URL"
        assert self.cluster is not None
        os.environ[var] = self.cluster.url(f"shop_{key.replace('-', '_')}")
        self._env_vars.append(var)
        return EnvironmentConfig(
            name=key,
            tier=tier,  # type: ignore[arg-type]
            database_url_env=var,
            backups=str(self.backups / key),
            **extra,
        )

    def start_core(self) -> Runtime:
        envs = {
            "forward-fix": self._env(
                "forward-fix", "production", migrations_dir=self._copy_folder("forward-fix")
            ),
            "snapshot-restore": self._env("snapshot-restore", "production"),
            "development": self._env(
                "development",
                "development",
                migrations_dir=self._copy_folder("development", without_newest=True),
            ),
            "hung-migration": self._env("hung-migration", "production"),
        }
        if self.pitr_practice is not None:
            self._env_vars.append("ROLLBOT_DRILL_PITR_URL")
            envs["pitr"] = self.pitr_practice.environment("ROLLBOT_DRILL_PITR_URL")
        settings = Settings().model_copy(
            update={
                "database_url": f"sqlite:///{self.output / 'drill-state.db'}",
                "audit_log": self.output / "audit.log",
                "approvals": ApprovalsConfig(users=(REQUESTER, APPROVER)),
                "environments": envs,
                "source": "rollbot drill",
            }
        )
        (self.output / "drill-state.db").unlink(missing_ok=True)
        self.runtime = start_runtime(settings)
        return self.runtime

    # -------------------------------------------------------------- one incident
    def incident(
        self,
        outcome: MethodOutcome,
        answers: list[str],
        options: dict[str, Any] | None = None,
    ) -> Any:
        assert self.runtime is not None
        bot, executor = self.runtime.bot, self.runtime.executor
        planning: list[StepTiming] = []
        with timed(planning, "open, triage, plan (pinned) and approve", "core.plan"):
            incident = bot.open_incident(
                REQUESTER,
                f"drill: {outcome.title} after {self.result.problematic}",
                environment=outcome.environment,
                source="drill",
            )
            outcome.incident_ref = incident.ref
            for answer in answers:
                bot.answer(incident.ref, answer, REQUESTER)
            bot.choose_method(incident.ref, outcome.method_id, REQUESTER, options)
            if bot.policy(outcome.tier).min_approvals > 0:  # type: ignore[arg-type]
                bot.request_approval(incident.ref, REQUESTER)
                bot.approve(incident.ref, APPROVER)
            bot.start(incident.ref, REQUESTER)
        outcome.steps += planning
        self.echo(
            f"  {incident.ref} {outcome.method_id}: plan approved in {planning[0].seconds:.1f}s"
        )
        sink = TimingSink(self.echo)
        done = executor.run_incident(incident.ref, sink)
        while waiting := [s for s in done.steps if s.status == "waiting"]:
            # A person's step (point the app at the restored database): a drill moves no app.
            bot.decide_step(done.id, waiting[0].id, REQUESTER, "done")
            done = executor.run_incident(incident.ref, sink)
        outcome.steps += sink.timings
        outcome.incident_state = done.state
        if done.state != "verifying":
            failed = next((s for s in done.steps if s.error), None)
            outcome.problems.append(
                f"{done.ref} ended {done.state}"
                + (
                    f" at step {failed.seq} ({failed.title}): {redact(failed.error)}"
                    if failed
                    else ""
                )
            )
        return done

    def close(self, outcome: MethodOutcome) -> None:
        """Resolve a verified incident (the after-rollback 'verify database state' is ticked)."""
        assert self.runtime is not None
        bot = self.runtime.bot
        if not outcome.incident_ref or outcome.incident_state != "verifying":
            return
        if outcome.verified:
            bot.tick(outcome.incident_ref, "after.verify_database", REQUESTER)
            bot.resolve(outcome.incident_ref, REQUESTER, confirm_unticked=True)
            outcome.incident_state = "resolved"

    # -------------------------------------------------------------- breaking it
    def _url(self, key: str) -> str:
        assert self.runtime is not None
        return self.runtime.settings.environment(key).database_url()

    def _apply_problematic(self, outcome: MethodOutcome, url: str) -> datetime:
        at = datetime.now(UTC)
        with timed(outcome.setup, f"apply the problematic migration {self.result.problematic}"):
            applied = apply_migrations(url, read_journal(self._folder()))
        if [e.tag for e in applied] != [self.result.problematic]:
            raise RollbotError(
                f"expected to apply only {self.result.problematic}, applied "
                f"{', '.join(e.tag for e in applied) or 'nothing'}"
            )
        return at

    def _pre_deploy_snapshot(self, outcome: MethodOutcome, key: str, url: str) -> str:
        with timed(outcome.setup, "automated pre-deploy snapshot (verified)"):
            snap = create_snapshot(
                url,
                open_storage(self.backups / key),
                label="pre-deploy snapshot (drill)",
                purpose="pre-deploy",
                verify=True,
            )
        return snap.name

    def _write_after_snapshot(self, outcome: MethodOutcome, url: str) -> list[int]:
        """Orders written after the snapshot, on purpose: a restore must lose exactly these."""
        schema = sql.Identifier(self._data_schema())
        title = f"write {ROWS_AFTER_SNAPSHOT} orders after the snapshot"
        with timed(outcome.setup, title), connect(url, autocommit=True) as conn:
            rows = conn.execute(
                sql.SQL(
                    "INSERT INTO {}.orders (user_id, total_cents, note) "
                    "SELECT 1 + mod(g, 50), 1000 + g, 'written after the snapshot (drill)' "
                    "FROM generate_series(1, %s) g RETURNING id"
                ).format(schema),
                (ROWS_AFTER_SNAPSHOT,),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def _data_schema(self) -> str:
        assert self.baseline is not None
        return self.baseline.data_schema

    def _check_after_rows_gone(self, url: str, ids: list[int], outcome: MethodOutcome) -> None:
        with connect(url) as conn:
            left = conn.execute(
                sql.SQL("SELECT count(*) FROM {}.orders WHERE id = ANY(%s)").format(
                    sql.Identifier(self._data_schema())
                ),
                (ids,),
            ).fetchone()[0]
        if left:
            outcome.problems.append(
                f"{left} of the {len(ids)} orders written after the snapshot survived"
            )
        else:
            outcome.checks.append(
                f"exactly the {len(ids)} orders written after the snapshot are gone (documented loss)"
            )

    # -------------------------------------------------------------- the methods
    def outcome(self, key: str, method_id: str, title: str) -> MethodOutcome:
        assert self.runtime is not None
        env = self.runtime.settings.environment(key)
        method = RUNBOOK.method(method_id)
        return MethodOutcome(
            key=key,
            title=title,
            method_id=method_id,
            environment=env.name,
            tier=env.tier,
            expected_loss=method.data_loss or "none",
        )

    def forward_fix(self, outcome: MethodOutcome) -> None:
        assert self.cluster and self.baseline and self.runtime
        url = clone_database(self.cluster, "shop_forward_fix")
        self._apply_problematic(outcome, url)
        self.incident(outcome, ["schema_only"], {"migration": self.result.problematic})
        if outcome.incident_state == "verifying":
            check_schema(url, self.baseline.schema, outcome)
            check_checksums(url, self.baseline, outcome, "a forward-fix loses no row")
            folder = self.runtime.settings.environment("forward-fix").migrations_dir  # type: ignore[union-attr]
            written = read_journal(folder).entries[-1]
            check_head(url, read_journal(folder), written.tag, outcome)
            outcome.note = (
                f"reverse drafted by rollbot and written as {written.tag}.sql "
                f"(in {folder}); the example also ships a hand-written reverse for comparison"
            )

    def _restore(self, outcome: MethodOutcome) -> None:
        assert self.cluster and self.baseline
        key = outcome.key
        url = clone_database(self.cluster, f"shop_{key.replace('-', '_')}")
        snapshot = self._pre_deploy_snapshot(outcome, key, url)
        self._apply_problematic(outcome, url)
        ids = self._write_after_snapshot(outcome, url)
        done = self.incident(outcome, ["data_corruption"], {"snapshot": snapshot})
        restore_step = next((s for s in done.steps if s.kind == "postgres.restore"), None)
        if restore_step is not None and restore_step.params.get("snapshot") != snapshot:
            outcome.problems.append(
                f"the plan pinned {restore_step.params.get('snapshot')}, not the pre-migration "
                f"snapshot {snapshot}"
            )
        if outcome.incident_state == "verifying":
            check_schema(url, self.baseline.schema, outcome)
            check_checksums(
                url, self.baseline, outcome, "the database is exactly as at the snapshot"
            )
            self._check_after_rows_gone(url, ids, outcome)
            check_head(url, read_journal(self._folder()), self.baseline.head, outcome)
            outcome.note = f"restored {snapshot}, the snapshot taken before the migration"

    def snapshot_restore(self, outcome: MethodOutcome) -> None:
        self._restore(outcome)

    def pitr(self, outcome: MethodOutcome) -> None:
        assert self.pitr_practice is not None
        self.pitr_practice.run(outcome)

    def start_pitr(self) -> None:
        """The pgBackRest practice's own archiving cluster; one line when it cannot run."""
        reason = unavailable_reason()
        if reason is None:
            practice = PitrPractice(self)
            try:
                practice.start()
                self.pitr_practice = practice
                return
            except Exception as exc:
                practice.stop()
                reason = f"its archiving cluster did not start: {redact(exc)}"
        self.echo(f"point-in-time restore (pgBackRest) skipped: {reason}")
        self.result.notes.append(f"point-in-time restore (pgBackRest) was not practised: {reason}")

    def development(self, outcome: MethodOutcome) -> None:
        assert self.cluster and self.baseline and self.runtime
        url = clone_database(self.cluster, "shop_development")
        self._apply_problematic(outcome, url)
        self.incident(outcome, [])
        if outcome.incident_state == "verifying":
            diff = diff_schemas(
                self.baseline.migrated_schema,
                _describe(url, exclude=("drizzle", self._data_schema()))
                if self._data_schema() != "public"
                else _describe(url),
                ("pre-migration", "after"),
            )
            if diff:
                outcome.problems += [f"schema differs: {d}" for d in diff]
            else:
                outcome.checks.append(
                    "schema equals the pre-migration schema (re-created by the migrations "
                    "without the problematic one)"
                )
            folder = self.runtime.settings.environment("development").migrations_dir  # type: ignore[union-attr]
            check_head(url, read_journal(folder), self.baseline.head, outcome)
            outcome.checks.append("data not compared: a development reset loses all data by design")

    def hung_migration(self, outcome: MethodOutcome) -> None:
        assert self.cluster and self.baseline
        url = clone_database(self.cluster, "shop_hung_migration")
        orders = sql.Identifier(self._data_schema(), "orders")
        constraint = "orders_total_cents_nonnegative"
        alter = sql.SQL(
            "ALTER TABLE {} ADD CONSTRAINT {} CHECK (total_cents >= 0) NOT VALID"
        ).format(orders, sql.Identifier(constraint))
        holder = connect(url, application_name="shop-worker")
        try:
            with timed(outcome.setup, "an application transaction holds a lock on orders"):
                held_id = holder.execute(
                    sql.SQL(
                        "INSERT INTO {} (user_id, total_cents, note) "
                        "VALUES (1, 4200, 'uncommitted (drill)') RETURNING id"
                    ).format(orders)
                ).fetchone()[0]
            migration = _Migration(url, alter)
            with timed(outcome.setup, "start the migration's ALTER TABLE (it blocks)"):
                migration.start()
                _wait_until_blocked(url, timeout=20)
            self.incident(outcome, ["schema_only"])
            with timed(outcome.steps, "the blocked ALTER TABLE completes", "drill.wait"):
                finished = migration.wait(30)
            if not finished:
                outcome.problems.append("the ALTER TABLE did not complete after the triage")
            elif migration.retried:
                outcome.checks.append("the ALTER TABLE timed out once and completed when retried")
            else:
                outcome.checks.append("the blocked ALTER TABLE completed once the blocker ended")
            holder_alive = _alive(holder)
            if holder_alive:
                outcome.problems.append("the blocking session is still connected")
        finally:
            holder.close()
        if outcome.incident_state == "verifying" and migration.error is None:
            diff = diff_schemas(self.baseline.schema, _describe(url), ("pre-migration", "after"))
            intended = [d for d in diff if constraint in d and "only in after" in d]
            if len(intended) == 1 and len(diff) == 1:
                outcome.checks.append(
                    "schema is the pre-migration schema plus the ALTER's constraint "
                    "(its intended result)"
                )
            else:
                outcome.problems += [
                    f"unexpected schema change: {d}" for d in diff if d not in intended
                ]
                if not intended:
                    outcome.problems.append(f"constraint {constraint} is missing")
            check_checksums(
                url,
                self.baseline,
                outcome,
                "only the blocking transaction's uncommitted insert is lost (documented)",
            )
            with connect(url) as conn:
                gone = conn.execute(
                    sql.SQL("SELECT count(*) = 0 FROM {} WHERE id = %s").format(orders), (held_id,)
                ).fetchone()[0]
            if not gone:
                outcome.problems.append(
                    "the blocking transaction's uncommitted order was committed"
                )
        elif migration.error is not None:
            outcome.problems.append(f"the ALTER TABLE failed: {redact(migration.error)}")

    # -------------------------------------------------------------- cleanup
    def after_method(self, outcome: MethodOutcome) -> None:
        if self.options.keep or self.cluster is None:
            return
        key = outcome.key.replace("-", "_")
        drop_databases_like(self.cluster, f"shop_{key}")

    def finish(self) -> None:
        for var in self._env_vars:
            os.environ.pop(var, None)
        if self.runtime is not None:
            self.runtime.executor.shutdown()
            self.runtime.bot.store.dispose()
        if self.cluster is not None:
            self.cluster.stop()
        if self.pitr_practice is not None:
            self.pitr_practice.stop()
        if not self.options.keep:
            shutil.rmtree(self.backups, ignore_errors=True)
            shutil.rmtree(self.work, ignore_errors=True)


class _Migration:
    """The migration's ALTER TABLE in a thread, retried once if it gives up on the lock."""

    def __init__(self, url: str, statement: sql.Composable) -> None:
        self.url = url
        self.statement = statement
        self.error: BaseException | None = None
        self.retried = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-migration", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _once(self) -> None:
        with connect(self.url, autocommit=True, application_name="drill-migrate") as conn:
            conn.execute("SET lock_timeout = '60s'")
            conn.execute(self.statement)

    def _run(self) -> None:
        try:
            try:
                self._once()
            except psycopg.errors.LockNotAvailable:
                self.retried = True
                self._once()
        except BaseException as exc:
            self.error = exc
        finally:
            self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout) and self.error is None


def _wait_until_blocked(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(b.blocked_by for b in activity(url).backends):
            return
        time.sleep(0.05)
    raise RollbotError("the drill's ALTER TABLE never showed up as blocked")


def _alive(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


PRACTICE = (
    ("forward-fix", "forward_fix", "Forward-fix (reverse migration)"),
    ("snapshot-restore", "pg_dump_restore", "Snapshot restore (pg_dump)"),
    ("development", "dev_reset", "Development reset"),
    ("pitr", "pitr", "Point-in-time restore (pgBackRest, WAL replay)"),
    ("hung-migration", "stuck_migration", "Hung migration (blocking session ended)"),
)


def run_drill(options: DrillOptions, echo: Echo = print) -> DrillResult:
    """Run every local method; the result says what was verified (report written by the caller).

    A method that breaks (an error, not a failed check) is recorded as not verified and
    the drill goes on with the next one.
    """
    options.output.mkdir(parents=True, exist_ok=True)
    drill = Drill(options, echo)
    try:
        drill.start_cluster()
        drill.build_template()
        drill.start_pitr()
        drill.start_core()
        for key, method_id, title in PRACTICE:
            if key == "pitr" and drill.pitr_practice is None:
                continue
            echo(f"practising: {title}")
            outcome = drill.outcome(key, method_id, title)
            try:
                getattr(drill, key.replace("-", "_"))(outcome)
            except Exception as exc:  # one broken method must not hide the others' results
                outcome.problems.append(f"the drill could not complete this method: {redact(exc)}")
            drill.close(outcome)
            drill.result.outcomes.append(outcome)
            verdict = "verified" if outcome.verified else "NOT verified"
            echo(f"  {outcome.title}: {outcome.seconds:.1f}s, {verdict}")
            for problem in outcome.problems:
                echo(f"    problem: {redact(problem)}")
            drill.after_method(outcome)
    finally:
        drill.result.finished_at = datetime.now(UTC)
        drill.finish()
    return drill.result
