"""``rollbot snapshot --physical``: a pgBackRest backup (full, diff or incr) with progress.

pgBackRest prints each copied file with the share of the backup done so far at
``--log-level-console=detail`` (``backup file ... (16KB, 42.17%)``); that share is the
progress. The new set is read back from ``pgbackrest info`` and described like a snapshot.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.config import EnvironmentConfig
from bot.errors import ProviderError
from providers.pgbackrest.status import pitr_config
from providers.pgbackrest.tool import PgBackRest
from providers.pgbackrest.window import BackupSet, backups_of

TYPES = ("full", "diff", "incr")
_PERCENT = re.compile(r"\((?:[\d.]+[KMGT]?B), ([\d.]+)%\)")


def physical_backup(
    env: EnvironmentConfig, kind: str, progress: Callable[[float], None] | None = None
) -> BackupSet:
    if kind not in TYPES:
        raise ProviderError(f"backup type {kind!r} is not one of {', '.join(TYPES)}")
    tool = PgBackRest.of(pitr_config(env))
    before = {b.label for b in backups_of(tool.info())}

    def on_line(line: str) -> None:
        m = _PERCENT.search(line)
        if m and progress is not None:
            progress(float(m.group(1)))

    tool.run("backup", f"--type={kind}", "--log-level-console=detail", on_line=on_line)
    new = [b for b in backups_of(tool.info()) if b.label not in before]
    if not new:
        raise ProviderError("pgbackrest backup finished but no new backup set is listed")
    return new[-1]


def percent_printer(write: Callable[[str], None], step: float = 10.0) -> Callable[[float], None]:
    """Progress as a line every ``step`` percent (terminals and logs alike)."""
    shown = [-step]

    def show(percent: float) -> None:
        if percent - shown[0] >= step or percent >= 100 > shown[0]:
            shown[0] = percent
            write(f"physical backup: {percent:.0f}%")

    return show
