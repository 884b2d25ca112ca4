"""Running the team's own commands: one way, for incident steps and ``rollbot migrate``.

The command runs in its own process group so a timeout ends all of it; output is
streamed line by line (redacted) as it arrives; the exit code follows the shell's
conventions, so a wrapper can pass it through.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from bot.config import EnvironmentConfig
from bot.redact import redact

TIMEOUT_EXIT = 124  # what coreutils' timeout returns


def command_environment(env: EnvironmentConfig) -> dict[str, str]:
    """The team's commands see the environment's DATABASE_URL and ENVIRONMENT, as in CI."""
    variables = dict(os.environ)
    variables["ENVIRONMENT"] = env.name
    variables["ROLLBOT_ENVIRONMENT"] = env.name
    variables["ROLLBOT_TIER"] = env.tier
    if os.environ.get(env.database_url_env):
        variables["DATABASE_URL"] = env.database_url()
    return variables


def run_streaming(
    shell: str,
    cwd: Path,
    timeout: float,
    env: dict[str, str],
    out: Callable[[str], None],
) -> int:
    """Run ``shell`` with bash, stream its output to ``out``, return its exit code.

    A timeout kills the whole process group and returns 124; death by a signal
    returns 128 + the signal number, like a shell.
    """
    proc = subprocess.Popen(
        ["bash", "-c", shell],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out(redact(line.rstrip("\n")))
        code = proc.wait()
    finally:
        timer.cancel()
    if timed_out.is_set():
        return TIMEOUT_EXIT
    return 128 - code if code < 0 else code
