"""The folder one ``rollbot serve`` process group keeps its runtime files in.

Two ``rollbot serve`` on one host must not share anything but the state
database: not gunicorn's control socket (by default ``~/.gunicorn/gunicorn.ctl``,
which the second server silently took over and the first one deleted when it
stopped), not Prometheus' multiprocess files (one server's counters would show
in the other's ``/metrics``), not the worker's heartbeat. ``serve`` makes one
temporary folder per process group, tells its children with
``$ROLLBOT_RUN_DIR`` and ``$PROMETHEUS_MULTIPROC_DIR``, and removes it when it
stops (and folders of servers that were killed, at the next start).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bot.executor import process_alive

PREFIX = "rollbot-serve-"
ENV = "ROLLBOT_RUN_DIR"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
HEARTBEAT = "worker.heartbeat"
BEAT_EVERY = 1.0  # seconds between two heartbeat writes


@dataclass
class RunDir:
    path: Path
    owner_pid: int = field(default_factory=os.getpid)

    @classmethod
    def create(cls) -> RunDir:
        """A fresh folder, exported to this process' environment (so to every child)."""
        _remove_stale()
        path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        (path / "metrics").mkdir()
        os.environ[ENV] = str(path)
        os.environ[METRICS_ENV] = str(path / "metrics")
        return cls(path)

    @property
    def control_socket(self) -> Path:
        return self.path / "gunicorn.ctl"

    @property
    def heartbeat(self) -> Path:
        return self.path / HEARTBEAT

    def remove(self) -> None:
        """Only the process that made it removes it: gunicorn's forked workers leave through
        the same ``finally`` blocks as the master, and must not take the folder with them."""
        if os.getpid() == self.owner_pid:
            shutil.rmtree(self.path, ignore_errors=True)


def current() -> RunDir | None:
    """The folder of the ``rollbot serve`` this process belongs to, if any."""
    value = os.environ.get(ENV)
    return RunDir(Path(value), owner_pid=-1) if value else None


def _remove_stale() -> None:
    """Folders of servers that died without cleaning up (kill -9, a power cut)."""
    for entry in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        pid = entry.name.removeprefix(PREFIX).split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)) and entry.is_dir():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == os.getuid():
                    shutil.rmtree(entry, ignore_errors=True)


class Heartbeat:
    """The worker's sign of life: a file holding its pid, touched at most every second."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = 0.0

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._last < BEAT_EVERY:
            return
        self._last = now
        try:
            if self._owned():
                os.utime(self.path)
            else:
                tmp = self.path.with_suffix(f".{os.getpid()}")
                tmp.write_text(str(os.getpid()))
                os.replace(tmp, self.path)
        except OSError:
            pass  # the folder went away (serve is stopping); nothing to tell

    def _owned(self) -> bool:
        try:
            return self.path.read_text().strip() == str(os.getpid())
        except OSError:
            return False


def worker_alive(path: Path, stale_after: float) -> str | None:
    """Why the worker behind heartbeat ``path`` is not alive, or None when it is."""
    try:
        pid = int(path.read_text().strip() or 0)
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return "no heartbeat yet (starting, or not running)"
    if not pid or not process_alive(pid):
        return f"worker process {pid} is gone"
    if age > stale_after:
        return f"no heartbeat for {age:.0f} s"
    return None
