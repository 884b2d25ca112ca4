"""The PostgreSQL servers a PITR touches: the restored candidate and the live cluster.

The candidate starts on its own port with ``archive_mode=off`` (it must not archive into the
stanza the live cluster still archives to: the new timeline's history file would clash),
recovers to the target and promotes. The same-host switch stops both, keeps the old data
directory as ``<dir>.before_restore_<time>``, moves the candidate in and starts it with the
live cluster's own command line (``postmaster.opts``), so it listens where the old one did.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bot.config import PitrConfig
from bot.errors import ProviderError
from providers.pgbackrest.tool import as_user
from providers.postgres.cluster import find_server_bindir
from providers.postgres.conn import connect

Tick = Callable[[], None]


def bindir(pitr: PitrConfig) -> Path:
    return pitr.bindir or find_server_bindir()


def pg_ctl(pitr: PitrConfig, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = as_user(pitr.os_user, [str(bindir(pitr) / "pg_ctl"), *args])
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ProviderError(f"pg_ctl {args[-1]} failed: {detail[0]}")
    return proc


def running(pitr: PitrConfig, datadir: Path) -> bool:
    return (
        datadir.exists() and pg_ctl(pitr, "-D", str(datadir), "status", check=False).returncode == 0
    )


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def url_at(url: str, host: str, port: int) -> str:
    """The live URL (same roles and passwords: a physical copy) pointed at another server."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@{host}:{port}" if auth else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def log_path(datadir: Path) -> Path:
    return datadir.with_name(datadir.name + ".log")


def start_candidate(pitr: PitrConfig, datadir: Path, port: int) -> None:
    """Start the restored cluster on ``port`` (TCP only), not archiving."""
    opts = (
        f"-p {port} -c listen_addresses={pitr.restore_host} -c unix_socket_directories='' "
        "-c archive_mode=off"
    )
    pg_ctl(
        pitr,
        "-D",
        str(datadir),
        "-o",
        opts,
        "-l",
        str(log_path(datadir)),
        "-t",
        "600",
        "-w",
        "start",
    )


def wait_promoted(url: str, timeout: float, tick: Tick) -> None:
    """Until the candidate finished recovery (reached the target) and promoted."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        tick()
        try:
            with connect(url, autocommit=True) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                    return
        except Exception as exc:  # still starting up
            last = exc
        time.sleep(0.1)
    raise ProviderError(f"the restored cluster did not finish recovery in {timeout:.0f}s: {last}")


def stop(pitr: PitrConfig, datadir: Path, mode: str = "fast") -> None:
    if running(pitr, datadir):
        pg_ctl(pitr, "-D", str(datadir), "-m", mode, "-w", "stop")


def server_options(datadir: Path) -> str:
    """The live cluster's own options (``postmaster.opts``) without its ``-D``."""
    try:
        argv = shlex.split((datadir / "postmaster.opts").read_text())
    except OSError as exc:
        raise ProviderError(f"cannot read how {datadir} was started: {exc}") from None
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg == "-D":
            skip = True
        else:
            out.append(shlex.quote(arg))
    return " ".join(out)


def start_with(pitr: PitrConfig, datadir: Path, options: str) -> None:
    pg_ctl(
        pitr,
        "-D",
        str(datadir),
        "-o",
        options,
        "-l",
        str(log_path(datadir)),
        "-t",
        "600",
        "-w",
        "start",
    )


def restore_processes(datadir: Path) -> list[int]:
    """pids of pgBackRest processes restoring into ``datadir`` (found by their command line)."""
    needle = f"--pg1-path={datadir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            if b"pgbackrest" in cmdline and needle in cmdline:
                pids.append(int(entry.name))
    return pids


def end_processes(pids: list[int], timeout: float = 10) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
