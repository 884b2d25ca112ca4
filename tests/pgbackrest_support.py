"""A pgBackRest-archiving throwaway cluster with a steady writer, and a rollbot config for it."""

from __future__ import annotations

import getpass
import json
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from providers.pgbackrest.throwaway import ArchivingCluster
from providers.pgbackrest.tool import available
from providers.postgres.conn import connect

URL_VAR = "ROLLBOT_TEST_PITR_URL"
needs_pgbackrest = pytest.mark.skipif(
    not available(), reason="pgbackrest is not installed (apt-get install -y pgbackrest)"
)


@dataclass
class Writer:
    """Inserts a clock_timestamp() row every ``every`` seconds until stopped."""

    url: str
    every: float = 0.02
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                conn.execute("INSERT INTO ticks (written_at) VALUES (clock_timestamp())")
                self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def prepare(arch: ArchivingCluster, extra_rows: int = 0) -> str:
    """Database ``shop`` with a ``ticks`` table (and ``extra_rows`` of padding), backed up."""
    url = arch.cluster.create_database("shop")
    with connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE ticks (id bigserial PRIMARY KEY, written_at timestamptz NOT NULL)"
        )
        if extra_rows:
            conn.execute(
                "CREATE TABLE padding AS SELECT g AS id, repeat(md5(g::text), 8) AS t "
                "FROM generate_series(1, %s) g",
                (extra_rows,),
            )
    arch.backup()
    return url


def write_for(url: str, seconds: float) -> datetime:
    """Rows written for ``seconds``; the moment in their middle (a restore point)."""
    writer = Writer(url).start()
    time.sleep(seconds / 2)  # the writer's steady rate is the point: rows on both sides
    middle = datetime.now(UTC)
    time.sleep(seconds / 2)
    writer.stop()
    return middle


def write_config(tmp_path: Path, arch: ArchivingCluster, **pitr: str | int) -> Path:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in pitr.items())
    cfg = tmp_path / "rollbot.toml"
    cfg.write_text(
        f'database_url = "sqlite:///{tmp_path / "state.db"}"\n'
        f'audit_log = "{tmp_path / "audit.log"}"\n'
        + textwrap.dedent(
            f"""
            [cli.identities]
            {getpass.getuser()} = ["alice", "bob"]

            [approvals]
            users = ["alice", "bob"]

            [approvals.production]
            min_approvals = 1
            requester_may_approve = false

            [environments.production]
            tier = "production"
            database_url_env = "{URL_VAR}"
            backups = "{tmp_path / "backups"}"

            [environments.production.pitr]
            tool = "pgbackrest"
            stanza = "{arch.stanza}"
            config_path = "{arch.config_path}"
            data_directory = "{arch.cluster.datadir}"
            os_user = "{arch.pitr().os_user}"
            bindir = "{arch.cluster.bindir}"
            """
        )
        + extra
    )
    return cfg


@pytest.fixture
def archiving(monkeypatch: pytest.MonkeyPatch) -> Iterator[ArchivingCluster]:
    with ArchivingCluster() as arch:
        monkeypatch.setenv(URL_VAR, arch.cluster.url("shop"))
        yield arch
    os.environ.pop(URL_VAR, None)
