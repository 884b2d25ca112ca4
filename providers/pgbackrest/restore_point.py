"""The default restore point: one second before the problematic migration started.

rollbot's migrate telemetry writes ``<time> - Migration started: <name>`` to the audit log
(``settings.audit_log``, or ``<migrations>/audit.log``). The newest such line names the
migration a rollback is about; a person may give any other time (``--restore-to``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import EnvironmentConfig, Settings
from bot.errors import RollbotError

_STARTED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) - Migration started: (.+)$")


def parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RollbotError(
            f"restore point {value!r} is not an ISO time like 2026-12-02T14:30:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def audit_logs(settings: Settings, env: EnvironmentConfig) -> list[Path]:
    paths = [settings.audit_log]
    if env.migrations_dir is not None:
        paths.append(Path(env.migrations_dir) / "audit.log")
    return [p for p in paths if p is not None and p.exists()]


def last_migration_start(settings: Settings, env: EnvironmentConfig) -> tuple[datetime, str] | None:
    """When the newest recorded migration started, and its name."""
    found: list[tuple[datetime, str]] = []
    for path in audit_logs(settings, env):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _STARTED.match(line)
            if m:
                found.append((parse_time(m.group(1)), m.group(2)))
    return max(found) if found else None


def choose_target(
    settings: Settings, env: EnvironmentConfig, given: str | None
) -> tuple[datetime, str]:
    """The restore point and why it is that one."""
    if given:
        return parse_time(given), "chosen by a person"
    started = last_migration_start(settings, env)
    if started is None:
        raise RollbotError(
            f"no migration start is recorded for {env.name} (rollbot migrate's audit log); "
            "give the restore point: rollbot plan INC pitr --restore-to 2026-12-02T14:30:00Z"
        )
    at, name = started
    return at - timedelta(seconds=1), f"one second before migration {name} started"
