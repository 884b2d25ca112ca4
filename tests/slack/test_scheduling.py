"""The acknowledging threads ask Linux for short slices; the worker gives way (nice 10 in
a session, and scheduling group, of its own; SCHED_IDLE with best-effort disk I/O when
asked) and keeps the default slice."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from handlers.scheduling import ACK_SLICE_NS
from tests.slack.conftest import running_fake_slack
from tests.slack.serving import ROOT, children, serve
from tests.waiting import wait_until

PROBE = """
import threading
from handlers.scheduling import ask_for_short_slices, current_slice_ns
before = current_slice_ns()
took = ask_for_short_slices()
seen = []
t = threading.Thread(target=lambda: seen.append(current_slice_ns(threading.get_native_id())))
t.start(); t.join()
print(before, took, current_slice_ns(), seen[0])
"""


def _probe() -> tuple[int | None, bool, int | None, int | None]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    number = lambda s: None if s == "None" else int(s)  # noqa: E731
    return number(out[0]), out[1] == "True", number(out[2]), number(out[3])


def _slices(pid: int) -> set[int | None]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "sched").read_text()
        line = next((ln for ln in text.splitlines() if ln.startswith("se.slice")), None)
        found.add(int(line.rsplit(":", 1)[1]) if line else None)
    return found


def test_a_thread_and_the_threads_it_starts_get_the_short_slice() -> None:
    before, took, after, child = _probe()
    if not took:
        pytest.skip(f"this kernel gives no custom slices (before 6.12?): se.slice {before}")
    assert before != ACK_SLICE_NS
    assert after == child == ACK_SLICE_NS


def _threads(pid: int) -> list[int]:
    return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]


def _session_group(pid: int) -> tuple[str, int] | None:
    """The scheduling group Linux puts a process's session in, and its nice value, when
    the kernel groups by session (``/proc/<pid>/autogroup``: ``/autogroup-12 nice 0``)."""
    switch = Path("/proc/sys/kernel/sched_autogroup_enabled")
    if not switch.exists() or switch.read_text().strip() != "1":
        return None
    name, _, nice = Path(f"/proc/{pid}/autogroup").read_text().split()
    return name, int(nice)


def _io_class(pid: int) -> str:
    """``ionice``'s view of a thread's disk I/O priority, e.g. ``best-effort: prio 7``."""
    return subprocess.run(
        ["ionice", "-p", str(pid)], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.postgres
@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")
def test_the_served_ack_side_asks_for_short_slices_and_the_worker_gives_way(
    prod_db: str, tmp_path: Path
) -> None:
    short = _probe()[1]
    with running_fake_slack() as fake:
        served = serve(fake, prod_db, tmp_path, "http")
        try:
            assert served.proc is not None and served.port is not None
            for _ in range(3):  # the pool's threads exist once requests came
                with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/healthz") as r:
                    assert r.status == 200
            wait_until(lambda: "started (CPU: " in served.log.read_text(), "the worker's start")
            worker = served.worker_pid()
            acks = [p for p in children(served.proc.pid) if p != worker]
            assert len(acks) == 1 and worker is not None, acks
            assert {os.sched_getscheduler(t) for t in _threads(acks[0])} == {os.SCHED_OTHER}
            assert {os.sched_getscheduler(t) for t in _threads(worker)} == {os.SCHED_OTHER}
            assert {os.getpriority(os.PRIO_PROCESS, t) for t in _threads(worker)} == {10}
            assert os.getsid(worker) == worker != os.getsid(acks[0])  # a session of its own
            groups = _session_group(worker), _session_group(acks[0])
            if groups[0] is not None:  # ... which Linux schedules as one group, at nice 10
                assert groups[0][1] == 10 and groups[1] is not None and groups[1][1] == 0
                assert groups[0][0] != groups[1][0]
            if shutil.which("ionice"):  # "none": the I/O priority follows the nice value
                assert {_io_class(t) for t in _threads(worker)} == {"none: prio 0"}
            if short:
                assert _slices(acks[0]) == {ACK_SLICE_NS}
                assert ACK_SLICE_NS not in _slices(worker)
        finally:
            served.stop()


@pytest.mark.postgres
@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")
def test_worker_cpu_idle_runs_the_worker_sched_idle_with_best_effort_io(
    prod_db: str, tmp_path: Path
) -> None:
    """Checked as soon as the worker has given way, then killed: a SCHED_IDLE worker on a
    machine kept busy by others (the tests beside it) would take long to start or stop."""
    with running_fake_slack() as fake:
        served = serve(fake, prod_db, tmp_path, "http", slack={"worker_cpu": "idle"})
        try:
            worker = served.worker_pid()
            assert worker is not None
            wait_until(lambda: os.sched_getscheduler(worker) == os.SCHED_IDLE, "SCHED_IDLE")
            assert os.getpriority(os.PRIO_PROCESS, worker) == 10
            if shutil.which("ionice"):  # not the idle class SCHED_IDLE would imply
                assert _io_class(worker) == "best-effort: prio 7"
        finally:
            served.kill()
