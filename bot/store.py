"""Opening the state database and keeping its schema current.

SQLite file by default (WAL, busy timeout: several rollbot processes on one
machine), PostgreSQL via ``ROLLBOT_DATABASE_URL`` when replicas share the work.
The schema is upgraded with Alembic every time a process opens the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from bot.errors import ConfigError
from bot.redact import redact

MIGRATIONS = Path(__file__).with_name("store_migrations")


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use psycopg 3 for them."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(wait_ms: int) -> Any:
    def apply(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return apply


class Store:
    """Engine + session factory for rollbot's own state.

    ``wait_seconds`` bounds how long one statement waits for the database (a lock
    on SQLite, connecting and each statement on PostgreSQL): the acknowledging
    side uses a short bound so an unreachable database is an answer, not a hang.
    """

    def __init__(self, url: str, *, wait_seconds: float = 30.0) -> None:
        url = normalise_url(url)
        wait_ms = int(wait_seconds * 1000)
        connect_args: dict[str, Any] = {}
        if url.startswith("postgresql"):
            connect_args = {"connect_timeout": max(1, round(wait_seconds))}
            if wait_seconds < 30:
                connect_args["options"] = f"-c statement_timeout={wait_ms}"
        try:
            self.engine: Engine = create_engine(
                url, future=True, pool_pre_ping=True, connect_args=connect_args
            )
        except Exception as exc:  # bad URL syntax or unknown driver
            raise ConfigError(f"state database URL is not usable: {redact(exc)}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas(wait_ms))
            # SQLite's default deferred BEGIN lets two writers race; take the write lock at BEGIN,
            # except in read sessions (WAL readers never block the writer, nor it them).
            event.listen(self.engine, "begin", _sqlite_begin)
            _disable_pysqlite_autobegin(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(
            self.engine.execution_options(rollbot_read_only=True), expire_on_commit=False
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

    def tables(self) -> set[str]:
        return set(inspect(self.engine).get_table_names())

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only look (on SQLite it takes no write lock, so it never delays a writer)."""
        with self.read_sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_begin(conn: Any) -> None:
    read_only = conn.get_execution_options().get("rollbot_read_only")
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _disable_pysqlite_autobegin(engine: Engine) -> None:
    """Let the ``begin`` listener issue BEGIN IMMEDIATE (pysqlite would otherwise BEGIN itself)."""

    @event.listens_for(engine, "connect")
    def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None


def open_store(url: str, *, wait_seconds: float = 30.0) -> Store:
    store = Store(url, wait_seconds=wait_seconds)
    store.upgrade()
    return store
