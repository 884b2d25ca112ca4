"""Throwaway PostgreSQL clusters from the system's binaries.

Used by the test suite and by ``rollbot drill``: ``initdb`` + ``pg_ctl`` in a
temporary directory, listening on 127.0.0.1 on a free port with ``fsync=off``.
``initdb`` refuses to run as root, so as root every server command runs through
``runuser -u postgres``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from bot.errors import ProviderError
from bot.redact import register_secret

INSTALL_HINT = "apt-get update && apt-get install -y postgresql"


def find_server_bindir() -> Path:
    """Directory holding ``initdb``/``pg_ctl`` of the newest installed PostgreSQL server."""
    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    if candidates:
        return candidates[0]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ProviderError(
        f"no PostgreSQL server binaries (initdb, pg_ctl) found; install them with: {INSTALL_HINT}"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ThrowawayCluster:
    """A PostgreSQL server that lives as long as this object is started.

    ``url()`` gives a password-authenticated TCP URL (the password is random and
    registered for redaction), so code paths see the same kind of URL as in
    production.
    """

    bindir: Path = field(default_factory=find_server_bindir)
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    user: str = "postgres"
    root: Path | None = None
    _owned_root: bool = False
    running: bool = False

    @property
    def major_version(self) -> int:
        out = subprocess.run(
            [str(self.bindir / "pg_ctl"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        return int(out.split()[-1].split(".")[0])

    @property
    def datadir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def url(self, dbname: str = "postgres") -> str:
        return (
            f"postgresql://{self.user}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{dbname}"
        )

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _run(self, argv: list[str]) -> None:
        proc = subprocess.run(self._as_server_user(argv), capture_output=True, text=True)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ProviderError(f"{Path(argv[0]).name} failed: {detail[0]}")

    def start(self) -> ThrowawayCluster:
        register_secret(self.password)
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="rollbot-pg-"))
            self._owned_root = True
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "sock").mkdir(exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            try:
                pg = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ProviderError(
                    f"running as root needs a 'postgres' system user; install: {INSTALL_HINT}"
                ) from exc
            for p in (self.root, self.root / "sock", pwfile):
                os.chown(p, pg.pw_uid, pg.pw_gid)
        os.chmod(self.root, 0o700)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                self.user,
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        last_error: ProviderError | None = None
        for _ in range(5):
            self.port = free_port()
            opts = (
                f"-p {self.port} -h 127.0.0.1 -k {self.root / 'sock'} "
                "-c fsync=off -c full_page_writes=off -c synchronous_commit=off "
                "-c max_connections=100 -c shared_buffers=128MB"
            )
            try:
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.datadir),
                        "-o",
                        opts,
                        "-l",
                        str(self.root / "server.log"),
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ]
                )
            except ProviderError as exc:
                last_error = exc
                continue
            self.running = True
            return self
        raise last_error or ProviderError("could not start PostgreSQL")

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(ProviderError):
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.datadir),
                        "-m",
                        "immediate",
                        "stop",
                    ]
                )
            self.running = False
        if self._owned_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def create_database(self, name: str) -> str:
        """Create a database and return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, ending any session still connected to it.

        Every database of a long-lived cluster stays on disk until it is dropped (about
        300 files, 10 MB, each): hundreds of them make ``stop()``'s removal of the data
        directory take minutes. ``WITH (FORCE)`` because a plain ``DROP DATABASE``
        fails after waiting 5 s for a session the caller forgot to close.
        """
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def __enter__(self) -> ThrowawayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
