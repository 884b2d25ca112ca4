"""Opening the state database and keeping its schema current.

SQLite file by default (WAL, busy timeout: several rollbot processes on one
machine), PostgreSQL via ``ROLLBOT_DATABASE_URL`` when replicas share the work.
The schema is upgraded with Alembic every time a process opens the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, Executable, Row, create_engine, event, inspect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.errors import ConfigError
from bot.redact import redact

MIGRATIONS = Path(__file__).with_name("store_migrations")
POOL_SIZE = 20
T = TypeVar("T")


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use psycopg 3 for them."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(wait_ms: int) -> Any:
    def apply(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives the process (kill -9), without an fsync each; only
        # an OS crash or power loss may drop the newest commits (PostgreSQL for that).
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return apply


class Store:
    """Engine + session factory for rollbot's own state.

    ``wait_seconds`` bounds how long one statement waits for the database (a lock
    on SQLite, connecting and each statement on PostgreSQL): the acknowledging
    side uses a short bound so an unreachable database is an answer, not a hang.

    ``polls_for_lock`` (SQLite; the inbox's own file): its connections never sleep in
    SQLite's busy handler, so :meth:`execute_once` need not switch it off and on around
    each write. Under load those two extra statements per ack were as slow as the insert
    itself: each hands the GIL back and waits for it again (``benchmarks/load.py``).
    """

    def __init__(
        self,
        url: str,
        *,
        wait_seconds: float = 30.0,
        ping: bool = True,
        own_inbox: bool = True,
        polls_for_lock: bool = False,
    ) -> None:
        url = normalise_url(url)
        self.wait_seconds = wait_seconds
        wait_ms = int(wait_seconds * 1000)
        self._polls_for_lock = polls_for_lock
        connect_args: dict[str, Any] = {}
        if url.startswith("postgresql"):
            connect_args = {"connect_timeout": max(1, round(wait_seconds))}
            if wait_seconds < 30:
                connect_args["options"] = f"-c statement_timeout={wait_ms}"
        try:
            # A pool as large as gunicorn's threads: overflow connections are closed when
            # returned, and opening one (a PostgreSQL backend, password auth) is the slow part.
            self.engine: Engine = create_engine(
                url,
                future=True,
                # A SQLite file cannot drop a connection: pinging it is a statement for nothing.
                pool_pre_ping=ping and not url.startswith("sqlite"),
                pool_size=POOL_SIZE,
                max_overflow=POOL_SIZE,
                connect_args=connect_args,
            )
        except Exception as exc:  # bad URL syntax or unknown driver
            raise ConfigError(f"state database URL is not usable: {redact(exc)}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas(0 if polls_for_lock else wait_ms))
            # SQLite's default deferred BEGIN lets two writers race; take the write lock at BEGIN,
            # except in read sessions (WAL readers never block the writer, nor it them).
            event.listen(self.engine, "begin", _sqlite_begin)
            _disable_pysqlite_autobegin(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(
            self.engine.execution_options(rollbot_read_only=True), expire_on_commit=False
        )
        # One statement, one round trip: PostgreSQL in autocommit; SQLite reads deferred
        # (no write lock), writes in their own BEGIN IMMEDIATE.
        if self.engine.dialect.name == "postgresql":
            autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self.single_reads, self.single_writes = autocommit, autocommit
        else:
            # No BEGIN at all: each statement is its own transaction, and SQLite holds the
            # write lock only while it runs that statement (in C, with the GIL released).
            self.single_reads = self.engine.execution_options(rollbot_single=True)
            self.single_writes = self.single_reads
        # Where the inbox lives (``bot.inbox``). On SQLite a file of its own: SQLite has one
        # write lock per file, and an ack's insert must not wait for a worker's transaction.
        self.inbox_side: Store = self
        path = _sqlite_file(url)
        if own_inbox and path is not None:
            self.inbox_side = Store(
                f"sqlite:///{path}-inbox",
                wait_seconds=wait_seconds,
                ping=ping,
                own_inbox=False,
                polls_for_lock=True,
            )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        if self.inbox_side is not self:
            from bot.models import InboxItem

            InboxItem.__table__.create(self.inbox_side.engine, checkfirst=True)  # type: ignore[attr-defined]

    def tables(self) -> set[str]:
        return set(inspect(self.engine).get_table_names())

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    def execute_once(self, statement: Executable, params: dict[str, Any] | None = None) -> int:
        """One write statement in a transaction of its own; its row count.

        On SQLite the write lock is held only while SQLite runs the statement. Waiting for
        it: the inbox's file (``polls_for_lock``) asks every millisecond until
        ``wait_seconds`` (an ack must not sleep through the moments it is free); the state
        file leaves the wait to SQLite's busy handler, which sleeps in C (1, 2, 5, 10 ms...)
        where a Python loop retrying each millisecond cost the worker's threads a failed
        statement, an exception and two ``PRAGMA`` toggles per try.
        """
        return self._write_once(statement, params, lambda result: result.rowcount)

    def returning_once(
        self, statement: Executable, params: dict[str, Any] | None = None
    ) -> Row[Any] | None:
        """:meth:`execute_once` for a statement with ``RETURNING``: its first row, if any.
        One round trip where an update and a read of what it changed would be two."""
        return self._write_once(statement, params, lambda result: result.first())

    def _write_once(
        self, statement: Executable, params: dict[str, Any] | None, read: Callable[[Any], T]
    ) -> T:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            with self.single_writes.connect() as conn:
                try:
                    out = read(conn.execute(statement, params or {}))
                    conn.commit()
                    return out
                except OperationalError as exc:
                    polling = self._polls_for_lock and self.dialect == "sqlite"
                    if not polling or "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
            time.sleep(0.001)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only look (on SQLite it takes no write lock, so it never delays a writer)."""
        with self.read_sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self.inbox_side is not self:
            self.inbox_side.dispose()


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return path if path and path != ":memory:" else None


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get("rollbot_single"):
        return  # autocommit: the statement is the transaction
    read_only = conn.get_execution_options().get("rollbot_read_only")
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _disable_pysqlite_autobegin(engine: Engine) -> None:
    """Let the ``begin`` listener issue BEGIN IMMEDIATE (pysqlite would otherwise BEGIN itself)."""

    @event.listens_for(engine, "connect")
    def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None


def open_store(url: str, *, wait_seconds: float = 30.0, ping: bool = True) -> Store:
    store = Store(url, wait_seconds=wait_seconds, ping=ping)
    store.upgrade()
    return store
