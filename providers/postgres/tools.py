"""PostgreSQL client tools of the server's major version, run without leaking the password.

A newer ``pg_restore`` refuses archives it cannot read from an older server and an
older ``pg_dump`` refuses a newer server, so rollbot always uses the tools of the
*server's* major version: ``/usr/lib/postgresql/<major>/bin`` first (Debian's layout),
then ``PATH`` (checked with ``--version``). The password travels to child processes
in ``PGPASSWORD`` only: the URL they see on their command line has none, so neither
``ps`` nor our logs show it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bot.errors import ProviderError
from bot.redact import register_secret

TOOL_NAMES = ("pg_dump", "pg_restore", "psql", "pg_dumpall")
DEBIAN_ROOT = Path("/usr/lib/postgresql")

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def install_hint(major: int) -> str:
    return f"apt-get install -y postgresql-client-{major}"


def tool_major_version(path: Path | str) -> int | None:
    """Major version a client tool reports with ``--version``, or None if it cannot say."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION.search(out)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class ClientTools:
    """Paths of ``pg_dump``, ``pg_restore``, ``psql`` and ``pg_dumpall`` of one major version."""

    major: int
    pg_dump: Path
    pg_restore: Path
    psql: Path
    pg_dumpall: Path


def find_client_tools(major: int, *, search_path: str | None = None) -> ClientTools:
    """The client tools matching server major version ``major``.

    Raises ProviderError naming the version needed and the install command when a
    tool is missing or only a different major version is installed.
    """
    found: dict[str, Path] = {}
    wrong: dict[str, int] = {}
    for name in TOOL_NAMES:
        candidates: list[Path] = [DEBIAN_ROOT / str(major) / "bin" / name]
        on_path = shutil.which(name, path=search_path)
        if on_path:
            candidates.append(Path(on_path))
        for candidate in candidates:
            if not (candidate.is_file() and os.access(candidate, os.X_OK)):
                continue
            version = tool_major_version(candidate)
            if version == major:
                found[name] = candidate
                break
            if version is not None:
                wrong[name] = version
    missing = [n for n in TOOL_NAMES if n not in found]
    if missing:
        detail = ", ".join(
            f"{n} (found version {wrong[n]})" if n in wrong else f"{n} (not found)" for n in missing
        )
        raise ProviderError(
            f"PostgreSQL {major} client tools needed for a version {major} server: {detail}; "
            f"install them with: {install_hint(major)}"
        )
    return ClientTools(
        major, found["pg_dump"], found["pg_restore"], found["psql"], found["pg_dumpall"]
    )


def split_password(url: str) -> tuple[str, str | None]:
    """``url`` without its password, and the password (unquoted), for child processes."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    password = unquote(parts.password)
    register_secret(password)
    register_secret(parts.password)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{user}@{host}" if user else host
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl(), password


def child_env(url: str) -> tuple[str, dict[str, str]]:
    """The password-free URL to pass on a command line and the environment carrying it.

    The environment is a copy of ours plus ``PGPASSWORD`` (a URL without a password
    keeps whatever PGPASSWORD or ~/.pgpass the operator set up); ``PGAPPNAME`` marks
    our connections so they are recognisable in ``pg_stat_activity``.
    """
    safe_url, password = split_password(url)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    env.setdefault("PGAPPNAME", "rollbot")
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return safe_url, env
