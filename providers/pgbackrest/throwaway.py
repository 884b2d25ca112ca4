"""A throwaway PostgreSQL that archives WAL to a pgBackRest repository (drill, tests, benchmark).

Built on ``providers.postgres.cluster.ThrowawayCluster``: started, then ``archive_mode=on``
with pgBackRest's ``archive-push`` set by ``ALTER SYSTEM`` and a restart; the stanza is
created and checked. Everything lives in the cluster's root unless ``repo`` is given.
"""

from __future__ import annotations

import getpass
import os
import pwd
import time
from dataclasses import dataclass, field
from pathlib import Path

from bot.config import PitrConfig
from bot.errors import ProviderError
from providers.pgbackrest.cluster_ops import pg_ctl
from providers.pgbackrest.tool import PgBackRest
from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.conn import connect

STANZA = "rollbot"


def server_user() -> str:
    return "postgres" if os.geteuid() == 0 else getpass.getuser()


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(path, pg.pw_uid, pg.pw_gid)


@dataclass
class ArchivingCluster:
    cluster: ThrowawayCluster = field(default_factory=ThrowawayCluster)
    repo: Path | None = None
    stanza: str = STANZA

    @property
    def root(self) -> Path:
        assert self.cluster.root is not None
        return self.cluster.root

    @property
    def config_path(self) -> Path:
        return self.root / "pgbackrest.conf"

    def pitr(self, **extra: object) -> PitrConfig:
        return PitrConfig(
            tool="pgbackrest",
            stanza=self.stanza,
            config_path=self.config_path,
            data_directory=self.cluster.datadir,
            os_user=server_user(),
            bindir=self.cluster.bindir,
            **extra,  # type: ignore[arg-type]
        )

    def tool(self) -> PgBackRest:
        return PgBackRest(self.stanza, self.config_path, server_user())

    def start(self) -> ArchivingCluster:
        self.cluster.start()
        repo = self.repo or self.root / "repo"
        for folder in (repo, self.root / "pgbr"):
            folder.mkdir(parents=True, exist_ok=True)
            _own(folder)
        self.config_path.write_text(
            "[global]\n"
            f"repo1-path={repo}\nrepo1-retention-full=4\n"
            f"log-path={self.root / 'pgbr'}\nlock-path={self.root / 'pgbr'}\n"
            f"spool-path={self.root / 'pgbr'}\nlog-level-file=off\n"
            "start-fast=y\ncompress-type=none\nprocess-max=2\n\n"
            f"[{self.stanza}]\npg1-path={self.cluster.datadir}\npg1-port={self.cluster.port}\n"
            f"pg1-socket-path={self.root / 'sock'}\npg1-user={self.cluster.user}\n"
        )
        _own(self.config_path)
        push = f"pgbackrest --config={self.config_path} --stanza={self.stanza} archive-push %p"
        with connect(self.cluster.url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET archive_mode = 'on'")
            conn.execute(f"ALTER SYSTEM SET archive_command = '{push}'")
        pitr = self.pitr()
        log = str(self.root / "server.log")
        pg_ctl(pitr, "-D", str(self.cluster.datadir), "-l", log, "-m", "fast", "-w", "restart")
        self.tool().run("stanza-create")
        self.tool().run("check")
        return self

    def backup(self, kind: str = "full") -> None:
        self.tool().run("backup", f"--type={kind}")

    def archive_now(self, timeout: float = 60) -> str:
        """Switch WAL and wait until that segment is archived (recovery needs WAL past T)."""
        with connect(self.cluster.url(), autocommit=True) as conn:
            wal = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]  # type: ignore[index]
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                row = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
                if row and row[0] and row[0][8:] >= wal[8:]:
                    return str(wal)
                time.sleep(0.05)
        raise ProviderError(f"WAL {wal} was not archived within {timeout:.0f}s")

    def stop(self) -> None:
        self.cluster.stop()

    def __enter__(self) -> ArchivingCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
