"""Running ``pgbackrest``: one way, as the cluster's OS user, with one-line failures.

pgBackRest must run as the user that owns the data directory (``postgres``); as root every
command goes through ``runuser``. Output is read line by line so long commands (backup,
restore) report progress; a failure becomes a ProviderError naming the command and the
last line pgBackRest printed, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import PitrConfig
from bot.errors import ProviderError
from bot.redact import redact

INSTALL_HINT = "apt-get update && apt-get install -y pgbackrest"
PitrConfig.tools.add("pgbackrest")
Line = Callable[[str], None]


def available() -> bool:
    return shutil.which("pgbackrest") is not None


def as_user(user: str, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` (through runuser when we are root and it is another user)."""
    if os.geteuid() == 0 and user != "root":
        return ["runuser", "-u", user, "--", *argv]
    return argv


@dataclass(frozen=True)
class PgBackRest:
    """The configured stanza, as the configured OS user."""

    stanza: str
    config_path: Path
    os_user: str = "postgres"

    @classmethod
    def of(cls, pitr: PitrConfig) -> PgBackRest:
        return cls(pitr.stanza, pitr.config_path, pitr.os_user)

    def argv(self, command: str, *options: str) -> list[str]:
        if not available():
            raise ProviderError(f"pgbackrest is not installed; install it with: {INSTALL_HINT}")
        base = ["pgbackrest", f"--config={self.config_path}", f"--stanza={self.stanza}"]
        return as_user(self.os_user, [*base, *options, command])

    def spawn(self, command: str, *options: str) -> subprocess.Popen[str]:
        """Start a long command in its own session (so its children can be found and ended)."""
        return subprocess.Popen(
            self.argv(command, *options),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )

    def run(self, command: str, *options: str, on_line: Line | None = None) -> str:
        """Run to the end; its output, or ProviderError with the last line it printed."""
        proc = self.spawn(command, *options)
        return finish(proc, f"pgbackrest {command}", on_line)

    def info(self) -> dict[str, Any]:
        """``pgbackrest info --output=json`` for the stanza (its one entry)."""
        text = self.run("info", "--output=json")
        try:
            stanzas = json.loads(text)
        except json.JSONDecodeError:
            raise ProviderError("pgbackrest info printed something that is not JSON") from None
        found = next((s for s in stanzas if s.get("name") == self.stanza), None)
        status = (found or {}).get("status") or {}
        if found is None or status.get("code") == 1:
            raise ProviderError(
                f"pgBackRest has no stanza {self.stanza!r} in {self.config_path}: create it with "
                f"`pgbackrest --stanza={self.stanza} stanza-create` (as {self.os_user})"
            )
        return found

    def check(self) -> None:
        """``pgbackrest check``: the archive_command works and WAL reaches the repository."""
        self.run("check")


def finish(proc: subprocess.Popen[str], what: str, on_line: Line | None = None) -> str:
    """Read ``proc`` to its end; its output, or ProviderError with its last line."""
    lines: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip("\n")
        lines.append(line)
        if on_line is not None:
            on_line(redact(line))
    code = proc.wait()
    if code != 0:
        errors = [ln for ln in lines if "ERROR" in ln] or lines or ["no output"]
        raise ProviderError(f"{what} failed (exit {code}): {redact(errors[-1].strip())}")
    return "\n".join(lines)
