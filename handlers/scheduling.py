"""Ask Linux to run the acknowledging threads promptly, and the worker behind them.

Under a restore the ack side shares the CPUs with busy PostgreSQL backends. Linux's
EEVDF scheduler (6.6+) lets a thread ask for a shorter time slice (``sched_setattr``
with ``sched_runtime``, honoured for ordinary threads since 6.12, no privilege needed):
its virtual deadline comes sooner, so on waking it preempts a backend in mid-slice
instead of queueing behind it. It gets no more CPU than before, only earlier. Threads
inherit the setting, so it is asked for once, before gunicorn starts its pool.
Elsewhere (another OS, an older kernel) this does nothing.

The worker goes the other way (:func:`give_way`). Where Linux groups processes by
session for scheduling (``CONFIG_SCHED_AUTOGROUP``, on unless the process sits in a CPU
cgroup), niceness only ranks threads within one session's group, and the groups share
the CPUs as equals: a nice 10 worker in the acks' session spent the group's share, and a
waking ack then queued behind other groups (PostgreSQL's backends). So ``rollbot serve``
starts the worker in a session of its own, whose group the worker makes nice too; under
``SCHED_IDLE`` (opt-in) any ordinary thread that wakes takes the CPU from it at once.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the bare Bolt baseline imports this module: it stays light
    from bot.config import WorkerCpu

log = logging.getLogger(__name__)

ACK_SLICE_NS = 300_000  # 0.3 ms: an ack's own CPU work (the kernel allows 0.1-100 ms)
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}
_SCHED_OTHER = 0
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_BEST_EFFORT_LOWEST = (2 << 13) | 7  # class BE, level 7
_AUTOGROUP = Path("/proc/self/autogroup")
_AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")


def _syscall(number: int, *args: object) -> int:
    """A Linux system call Python's ``os`` does not wrap; its return value (errno kept)."""
    return int(ctypes.CDLL(None, use_errno=True).syscall(number, *args))


class _SchedAttr(ctypes.Structure):
    """``struct sched_attr`` (include/uapi/linux/sched/types.h), version 1."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


def ask_for_short_slices(slice_ns: int = ACK_SLICE_NS) -> bool:
    """Request ``slice_ns`` slices for this thread and the threads it starts later (keeping
    its policy and niceness); whether the kernel took it."""
    number = _SCHED_SETATTR.get(platform.machine())
    if not sys.platform.startswith("linux") or number is None:
        return False
    attr = _SchedAttr(
        size=ctypes.sizeof(_SchedAttr),
        sched_policy=_SCHED_OTHER,
        sched_nice=os.getpriority(os.PRIO_PROCESS, 0),
        sched_runtime=slice_ns,
    )
    if os.sched_getscheduler(0) != _SCHED_OTHER or _syscall(number, 0, ctypes.byref(attr), 0):
        log.debug("short scheduler slices not available: %s", os.strerror(ctypes.get_errno()))
        return False
    return current_slice_ns() == slice_ns  # a kernel before 6.12 accepts and ignores it


def current_slice_ns(tid: int | None = None) -> int | None:
    """The slice the scheduler gives a thread of this process (``se.slice``), if it says."""
    path = f"/proc/self/task/{tid}/sched" if tid else "/proc/self/sched"
    try:
        with open(path, encoding="ascii") as sched:
            for line in sched:
                if line.startswith("se.slice"):
                    return int(line.rsplit(":", 1)[1])
    except (OSError, ValueError):
        return None
    return None


def give_way(mode: WorkerCpu, niceness: int = 10) -> str:
    """Make this thread, and the threads and tools (pg_dump, pg_restore) it starts later,
    yield the CPU to the acks; what it got, for the log.

    ``low``: niceness only. ``idle``: also ``SCHED_IDLE``; the worker then runs on the CPU
    the host leaves over (on a host not saturated by other work, nearly all of it: the
    load benchmark's restores took as long). Its disk I/O stays best-effort (lowest level):
    ``SCHED_IDLE`` would otherwise make it idle-class, a safety snapshot waiting behind
    every other writer."""
    os.nice(niceness)
    got = f"nice {niceness}{_nice_session_group(niceness)}"
    if mode != "idle" or not hasattr(os, "SCHED_IDLE"):
        return got
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:
        return f"{got} (SCHED_IDLE refused: {exc.strerror})"
    number = _IOPRIO_SET.get(platform.machine())
    if number is not None:
        _syscall(number, _IOPRIO_WHO_PROCESS, 0, _IOPRIO_BEST_EFFORT_LOWEST)
    return f"SCHED_IDLE, {got}, best-effort I/O"


def _nice_session_group(niceness: int) -> str:
    """Give this process's session group (autogroup) ``niceness`` when the process leads
    its session (``rollbot serve`` starts the worker so; a service manager starts each
    service so): a group shared with others is theirs too. What it did, for the log."""
    if os.getsid(0) != os.getpid() or not _autogroups_on():
        return ""
    import tenacity  # here: the bare Bolt baseline imports this module, and it stays light

    write = tenacity.retry(  # unprivileged: one change per 100 ms on the whole host
        retry=tenacity.retry_if_exception(lambda exc: getattr(exc, "errno", 0) == errno.EAGAIN),
        wait=tenacity.wait_fixed(0.1),
        stop=tenacity.stop_after_attempt(10),
        reraise=True,
    )(_AUTOGROUP.write_text)
    try:
        write(str(niceness), encoding="ascii")
    except OSError as exc:
        return f" (session group: {exc.strerror})"
    return f", its session's scheduling group nice {niceness} too"


def _autogroups_on() -> bool:
    try:
        return _AUTOGROUP.exists() and _AUTOGROUP_ENABLED.read_text().strip() == "1"
    except OSError:
        return False
