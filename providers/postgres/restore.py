"""Restoring a snapshot: preview, verify, safety snapshot, restore, check, swap.

Order matters and is fixed: (1) the chosen snapshot is verified and a bad one is
refused before the target is touched; (2) a safety snapshot of the current state
is taken *and verified*; only then (3) the target changes. In swap mode the
safety snapshot runs beside the load into the new database (which does not touch
the target) and must have finished and verified before the swap: the same
guarantee, without paying for the dump and the load one after the other.

Default mode ``swap`` restores into a new database, checks it (restore exit code,
every table of the manifest present with the manifest's row counts), gives it the
target's access, settings and comment (``providers/postgres/database.py``), and only then
renames ``<db>`` to ``<db>_before_restore_<ts>`` and the new one to ``<db>``: the
target is never half-restored, and the old state stays one rename away. Mode
``in_place`` (for hosts where creating or renaming databases is impossible) empties
the target's schemas and restores into it. Directory snapshots restore with
``pg_restore -j``; plain ``.sql.gz``/``.sql.zst`` stream through ``psql``.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Literal

import psycopg
from psycopg import sql

from bot.errors import ProviderError
from bot.redact import redact
from providers.postgres.checksums import row_counts
from providers.postgres.conn import connect, dbname, describe, server_major_version, with_dbname
from providers.postgres.database import DatabaseShape, apply_access, create_like, read_shape
from providers.postgres.kept import free_kept_name
from providers.postgres.restore_checks import (
    RestoreOptions,
    RestoreRefusedError,
    SourceCheck,
    check_source,
)
from providers.postgres.snapshot import (
    DEFAULT_MIGRATIONS_TABLE,
    Snapshot,
    create_snapshot,
    get_snapshot,
    human_size,
    iter_decompressed,
    local_directory,
    migrations_head,
    verify_snapshot,
)
from providers.postgres.tools import ClientTools, child_env, find_client_tools
from providers.storage import BackupStorage, StorageError, storage_errors

Mode = Literal["swap", "in_place"]
Progress = Callable[[int], None]
MAX_IDENT = 63


def _suffixed(base: str, suffix: str) -> str:
    """``base + suffix`` cut to PostgreSQL's 63-byte identifier limit (suffix kept whole)."""
    room = MAX_IDENT - len(suffix.encode())
    cut = base.encode()[:room].decode(errors="ignore")
    return cut + suffix


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%d_%H%M%S")


@dataclass
class RestorePlan:
    """What a restore will do and what it may lose, for a person to approve."""

    target: str
    database: str
    snapshot: str
    format: str
    mode: Mode
    restore_point: datetime
    snapshot_size: int
    current_size: int
    kept_as: str | None
    snapshot_migrations_head: dict[str, Any] | None
    current_migrations_head: dict[str, Any] | None
    parallel_jobs: int
    tables_in_snapshot: int | None
    has_manifest: bool
    source: SourceCheck
    options: RestoreOptions

    def lines(self) -> list[str]:
        point = self.restore_point.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        out = [
            f"Target: {self.target} (database {self.database}, now {human_size(self.current_size)})",
            f"Restore point: {point} (snapshot {self.snapshot}, {self.format}, "
            f"{human_size(self.snapshot_size)})",
            f"May be lost: every change written to {self.database} after {point}",
        ]
        out += self.source.lines(self.options)
        if self.mode == "swap":
            out.append(
                f"Method: restore into a new database, check it, then swap names; the current "
                f"database is kept as {self.kept_as}"
            )
        else:
            out.append(
                "Method: in place: every schema of the target is dropped and recreated from the "
                "snapshot (the current state survives only in the safety snapshot)"
            )
        out.append(
            "Before anything changes: the snapshot is verified and a verified safety snapshot "
            "of the current state is taken"
        )
        if self.parallel_jobs > 1:
            out.append(f"Parallel restore: {self.parallel_jobs} jobs")
        if self.snapshot_migrations_head != self.current_migrations_head:
            out.append(
                f"Migrations head: now {_head(self.current_migrations_head)}, after restore "
                f"{_head(self.snapshot_migrations_head)}"
            )
        if not self.has_manifest:
            out.append("Note: this snapshot has no manifest; only a decompression test checks it")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _head(head: dict[str, Any] | None) -> str:
    if head is None:
        return "no migrations table"
    if not head:
        return "no migrations applied"
    return f"#{head.get('id', '?')} {str(head.get('hash', ''))[:12]}".strip()


@dataclass
class RestoreResult:
    snapshot: str
    mode: Mode
    database: str
    safety_snapshot: str
    kept_database: str | None
    durations: dict[str, float] = field(default_factory=dict)
    row_counts: dict[str, int] | None = None


def plan_restore(
    url: str,
    storage: BackupStorage,
    name: str,
    *,
    mode: Mode = "swap",
    jobs: int = 2,
    migrations_table: str = DEFAULT_MIGRATIONS_TABLE,
    now: datetime | None = None,
    options: RestoreOptions | None = None,
    conn: psycopg.Connection | None = None,
) -> RestorePlan:
    """A preview; reads the snapshot's manifest and the target (through ``conn`` when the
    caller has one open), changes nothing.

    Raises RestoreRefusedError when the snapshot does not fit the target (another
    database or server, roles missing) without the option that allows it.
    """
    _check_mode(mode)
    options = options or RestoreOptions()
    snap = get_snapshot(storage, name)
    db = dbname(url)
    with contextlib.nullcontext(conn) if conn is not None else connect(url) as conn:
        source = _check_fits(conn, snap, options)
        size_row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        current_head = migrations_head(conn, migrations_table)
    m = snap.manifest or {}
    kept = _suffixed(db, f"_before_restore_{_stamp(now or datetime.now(UTC))}")
    return RestorePlan(
        target=describe(url),
        database=db,
        snapshot=snap.name,
        format=snap.format,
        mode=mode,
        restore_point=snap.created_at,
        snapshot_size=snap.size,
        current_size=int(size_row[0]) if size_row else 0,
        kept_as=kept if mode == "swap" else None,
        snapshot_migrations_head=m.get("migrations_head") if snap.manifest else None,
        current_migrations_head=current_head,
        parallel_jobs=jobs if snap.format == "directory" else 1,
        tables_in_snapshot=len(m["row_counts"]) if m.get("row_counts") is not None else None,
        has_manifest=snap.manifest is not None,
        source=source,
        options=options,
    )


def _check_fits(conn: psycopg.Connection, snap: Snapshot, options: RestoreOptions) -> SourceCheck:
    source = check_source(conn, snap)
    source.refuse_unless(options, snap.name)
    if snap.format != "directory" and (options.no_owner or options.no_acl):
        raise RestoreRefusedError(
            f"snapshot {snap.name} is plain SQL ({snap.format}): its owners and grants cannot be "
            "skipped; create the missing roles instead"
        )
    return source


def _check_mode(mode: str) -> None:
    if mode not in ("swap", "in_place"):
        raise ProviderError(f"unknown restore mode {mode!r}; use swap or in_place")


def restore_snapshot(
    url: str,
    storage: BackupStorage,
    name: str,
    *,
    mode: Mode = "swap",
    jobs: int = 2,
    migrations_table: str = DEFAULT_MIGRATIONS_TABLE,
    progress: Progress | None = None,
    tools: ClientTools | None = None,
    now: datetime | None = None,
    options: RestoreOptions | None = None,
) -> RestoreResult:
    """Restore snapshot ``name`` into the database at ``url``; see the module docstring.

    ``progress(n)`` receives the archive bytes restored so far. Any failure before
    the swap leaves the target exactly as it was; the new database is dropped.
    """
    _check_mode(mode)
    started = time.monotonic()
    durations: dict[str, float] = {}
    now = now or datetime.now(UTC)
    db = dbname(url)

    t = time.monotonic()
    snap = verify_snapshot(storage, name)
    durations["verify_snapshot"] = time.monotonic() - t

    options = options or RestoreOptions()
    with connect(url) as conn:
        major = server_major_version(conn)
        _check_fits(conn, snap, options)  # again: the plan may be older than the server's roles
    if snap.server_major and snap.server_major > major:
        raise ProviderError(
            f"snapshot {snap.name} is from PostgreSQL {snap.server_major}; it cannot be restored "
            f"into {describe(url)}, which runs PostgreSQL {major}"
        )
    tools = tools or find_client_tools(major)

    def take_safety_snapshot() -> Snapshot:
        t = time.monotonic()
        try:
            safety = create_snapshot(
                url,
                storage,
                migrations_table=migrations_table,
                label=f"safety snapshot before restoring {snap.name}",
                purpose="safety",
                verify=True,
                tools=tools,
            )
        except StorageError as exc:  # refused before the target changes: say so
            raise StorageError(f"safety snapshot: {exc}; {db} was not changed") from None
        durations["safety_snapshot"] = time.monotonic() - t
        return safety

    extra = options.pg_restore_args()
    if mode == "swap":
        job = _Background(take_safety_snapshot)
        kept, counts, safety = _restore_swap(
            url, db, storage, snap, tools, jobs, progress, now, durations, job, extra
        )
    else:
        kept = None
        safety = take_safety_snapshot()
        counts = _restore_in_place(
            url, storage, snap, tools, jobs, progress, durations, safety, extra
        )
    durations["total"] = time.monotonic() - started
    return RestoreResult(snap.name, mode, db, safety.name, kept, durations, counts)


# --------------------------------------------------------------------------- loading


def _maintenance_url(url: str) -> str:
    """A database on the same server to run CREATE/ALTER/DROP DATABASE from."""
    for candidate in ("postgres", "template1"):
        if candidate != dbname(url):
            try:
                connect(with_dbname(url, candidate)).close()
            except ProviderError:
                continue
            return with_dbname(url, candidate)
    raise ProviderError(
        f"no maintenance database (postgres, template1) reachable on {describe(url)}; "
        "use restore mode in_place"
    )


def _load(
    target_url: str,
    storage: BackupStorage,
    snap: Snapshot,
    tools: ClientTools,
    jobs: int,
    progress: Progress | None,
    *,
    clean: bool,
    extra: list[str] | None = None,
) -> None:
    """Run pg_restore (directory) or psql (plain) into ``target_url``; raise on any error."""
    safe_url, env = child_env(target_url)
    if snap.format == "directory":
        with local_directory(storage, snap) as folder:
            argv = [str(tools.pg_restore), "--no-password", "--exit-on-error", "-v"]
            if clean:
                argv += ["--clean", "--if-exists"]
            argv += extra or []
            argv += [f"-j{max(1, jobs)}", "-d", safe_url, str(folder)]
            with storage_errors(f"read {snap.data_key} in {storage.location}"):
                sizes = {p.name.split(".")[0]: p.stat().st_size for p in folder.iterdir()}
            _run_reporting(argv, env, "pg_restore", sizes, progress)
        return
    argv = [
        str(tools.psql),
        "--no-password",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        safe_url,
        "-f",
        "-",
    ]
    with tempfile.TemporaryFile() as errfh:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errfh
        )
        assert proc.stdin is not None
        failure: BaseException | None = None
        try:
            with storage.open_read(snap.data_key) as raw:
                counted = _CountingReader(raw, progress)
                for chunk in iter_decompressed(counted, snap.format):
                    proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # psql stopped on an error; its message follows
        except BaseException as exc:
            failure = exc
            proc.kill()
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            rc = proc.wait()
        if failure is not None:
            raise failure
        if rc != 0:
            errfh.seek(0)
            raise ProviderError(f"psql failed restoring {snap.name}: {_first_line(errfh.read())}")


class _CountingReader:
    def __init__(self, raw: IO[bytes], progress: Progress | None) -> None:
        self.raw, self.progress, self.done = raw, progress, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.done += len(data)
        if self.progress and data:
            self.progress(self.done)
        return data

    def readable(self) -> bool:
        return True


def _first_line(stderr: bytes) -> str:
    lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"error|fatal", ln, re.IGNORECASE)]
    return redact((errors or lines or ["no error output"])[0].strip())


_FINISHED = re.compile(r"finished item (\d+)|processing data for table")


def _run_reporting(
    argv: list[str],
    env: dict[str, str],
    what: str,
    sizes: dict[str, int],
    progress: Progress | None,
) -> None:
    """Run pg_restore -v; turn its 'finished item N' lines into archive bytes done."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    errors: list[str] = []
    done = sizes.get("toc", 0)

    def read_stderr() -> None:
        nonlocal done
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").strip()
            m = _FINISHED.search(line)
            if m and m.group(1):
                done += sizes.get(m.group(1), 0)
                if progress:
                    progress(done)
            elif re.search(r"error|fatal", line, re.IGNORECASE):
                errors.append(line)

    reader = threading.Thread(target=read_stderr, name="pg_restore-stderr", daemon=True)
    reader.start()
    rc = proc.wait()
    reader.join()
    if rc != 0:
        raise ProviderError(f"{what} failed: {redact(errors[0] if errors else 'exit ' + str(rc))}")
    if progress:
        progress(sum(sizes.values()))


def _check_restored(url: str, snap: Snapshot) -> dict[str, int]:
    """Every table of the manifest exists with the manifest's row count (taken in pg_dump's snapshot)."""
    with connect(url) as conn:
        counts = row_counts(conn)
    expected: dict[str, int] | None = (snap.manifest or {}).get("row_counts")
    if expected is None:
        return counts
    missing = sorted(set(expected) - set(counts))
    if missing:
        raise ProviderError(
            f"restored database lacks table(s) {', '.join(missing[:5])} listed in {snap.name}"
        )
    wrong = [t for t in expected if counts[t] != expected[t]]
    if wrong:
        t = wrong[0]
        raise ProviderError(
            f"restored table {t} has {counts[t]} rows, snapshot {snap.name} recorded {expected[t]}"
        )
    return counts


# --------------------------------------------------------------------------- swap mode


def _restore_swap(
    url: str,
    db: str,
    storage: BackupStorage,
    snap: Snapshot,
    tools: ClientTools,
    jobs: int,
    progress: Progress | None,
    now: datetime,
    durations: dict[str, float],
    safety_job: _Background,
    extra: list[str],
) -> tuple[str, dict[str, int], Snapshot]:
    maint_url = _maintenance_url(url)
    stamp = _stamp(now)
    new_db = _suffixed(db, f"_restoring_{stamp}")
    kept = free_kept_name(url, now)
    safety_job.start()
    try:
        with connect(maint_url, autocommit=True) as maint:
            shape = _create_like(maint, db, new_db)
    except BaseException:
        safety_job.wait_quietly()
        raise
    new_url = with_dbname(url, new_db)
    try:
        t = time.monotonic()
        _load(new_url, storage, snap, tools, jobs, progress, clean=False, extra=extra)
        durations["restore"] = time.monotonic() - t
        t = time.monotonic()
        counts = _check_restored(new_url, snap)
        durations["check"] = time.monotonic() - t
        safety = safety_job.result()  # the target is touched only after this succeeded
        t = time.monotonic()
        with connect(maint_url, autocommit=True) as maint:
            apply_access(maint, shape, new_db)
            _swap(maint, db, new_db, kept)
        durations["swap"] = time.monotonic() - t
    except BaseException:
        safety_job.wait_quietly()
        with contextlib.suppress(ProviderError), connect(maint_url, autocommit=True) as maint:
            _drop_if_exists(maint, new_db)
        raise
    return kept, counts, safety


class _Background:
    """Run one function in a thread; ``result()`` joins and re-raises its exception."""

    def __init__(self, fn: Callable[[], Snapshot]) -> None:
        self.fn = fn
        self.value: Snapshot | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="safety-snapshot", daemon=True)

    def _run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:
            self.error = exc

    def start(self) -> None:
        self.thread.start()

    def wait_quietly(self) -> None:
        if self.thread.is_alive() or self.thread.ident is not None:
            self.thread.join()

    def result(self) -> Snapshot:
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


def _create_like(maint: psycopg.Connection, db: str, new_db: str) -> DatabaseShape:
    """Create ``new_db`` shaped like ``db`` (access comes last, see :func:`apply_access`)."""
    shape = read_shape(maint, db)
    _drop_if_exists(maint, new_db)
    try:
        create_like(maint, shape, new_db)
    except psycopg.Error as exc:
        raise ProviderError(
            f"cannot create database {new_db} for the restore ({_pg_reason(exc)}); "
            "use restore mode in_place"
        ) from None
    return shape


def _pg_reason(exc: psycopg.Error) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0]) if text else type(exc).__name__


def _drop_if_exists(maint: psycopg.Connection, name: str) -> None:
    maint.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _terminate_others(maint: psycopg.Connection, db: str) -> None:
    maint.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (db,),
    )


def _swap(maint: psycopg.Connection, db: str, new_db: str, kept: str) -> None:
    """Rename ``db`` -> ``kept`` and ``new_db`` -> ``db``; undo the first if the second fails."""
    ident = sql.Identifier
    maint.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident(db)))
    try:
        for attempt in range(10):
            _terminate_others(maint, db)
            try:
                maint.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(db), ident(kept))
                )
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 9:
                    raise ProviderError(
                        f"database {db} is still in use after terminating its connections; "
                        "nothing was swapped"
                    ) from None
                time.sleep(0.2)
    except BaseException:
        maint.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(ident(db)))
        raise
    try:
        maint.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(new_db), ident(db)))
    except psycopg.Error as exc:
        maint.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(kept), ident(db)))
        maint.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(ident(db)))
        raise ProviderError(f"swap failed, {db} left unchanged: {_pg_reason(exc)}") from None
    maint.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(ident(kept)))


# --------------------------------------------------------------------------- in-place mode


def _restore_in_place(
    url: str,
    storage: BackupStorage,
    snap: Snapshot,
    tools: ClientTools,
    jobs: int,
    progress: Progress | None,
    durations: dict[str, float],
    safety: Snapshot,
    extra: list[str],
) -> dict[str, int]:
    t = time.monotonic()
    try:
        with connect(url, autocommit=True) as conn:
            _terminate_others(conn, dbname(url))
            _empty_schemas(conn)
        _load(url, storage, snap, tools, jobs, progress, clean=True, extra=extra)
    except ProviderError as exc:
        raise ProviderError(
            f"{exc}; the target may be partly restored: restore safety snapshot {safety.name} "
            "to return to the previous state"
        ) from None
    durations["restore"] = time.monotonic() - t
    t = time.monotonic()
    counts = _check_restored(url, snap)
    durations["check"] = time.monotonic() - t
    return counts


def _empty_schemas(conn: psycopg.Connection) -> None:
    """Drop every user schema (objects created after the snapshot go too), keep an empty public."""
    schemas = [
        r[0]
        for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('information_schema') "
            "AND nspname !~ '^pg_'"
        ).fetchall()
    ]
    with conn.transaction():
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        owner = "pg_database_owner" if server_major_version(conn) >= 14 else "CURRENT_USER"
        conn.execute(sql.SQL("CREATE SCHEMA public AUTHORIZATION {}").format(sql.SQL(owner)))


__all__ = [
    "RestorePlan",
    "RestoreResult",
    "plan_restore",
    "restore_snapshot",
]


# --------------------------------------------------------------------------- leftovers


def _restoring_prefix(db: str) -> str:
    return _suffixed(db, "_restoring_" + _stamp(datetime(2000, 1, 1, tzinfo=UTC)))[:-15]


def restoring_databases(url: str) -> list[str]:
    """``<db>_restoring_<ts>`` databases a swap restore of ``url`` created and did not finish."""
    prefix = _restoring_prefix(dbname(url))
    with connect(_maintenance_url(url)) as maint:
        rows = maint.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY datname",
            (prefix,),
        ).fetchall()
    return [r[0] for r in rows if re.fullmatch(r"\d{8}_\d{6}", r[0][len(prefix) :])]


def drop_restoring_databases(url: str, names: list[str]) -> None:
    """Drop leftovers of an interrupted restore (ending a still-running pg_restore's session)."""
    prefix = _restoring_prefix(dbname(url))
    with connect(_maintenance_url(url), autocommit=True) as maint:
        for name in names:
            if not name.startswith(prefix):
                raise ProviderError(f"refusing to drop {name!r}: not a restore leftover")
            _drop_if_exists(maint, name)
