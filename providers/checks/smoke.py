"""Smoke checks right after a rollback: do the application's health URLs answer, and do the
team's smoke tests pass? Each result is one line that people read in the incident.

A health URL passes when it answers 2xx itself (a redirect is not followed: a login page
answering 200 would hide a broken app) within the timeout, and contains the expected text
when one is configured. The smoke command runs like the team's other commands (its own
process group, the environment's variables), pointed at the database a step moved to.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bot.config import EnvironmentConfig
from bot.redact import redact
from bot.shell import TIMEOUT_EXIT, command_environment, run_streaming
from bot.steps import DatabaseTarget

SNIPPET = 120  # characters of a failing answer's body worth showing


@dataclass(frozen=True)
class CheckResult:
    """One smoke check: what was checked, whether it passed, and what was seen."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return redact(f"{'ok' if self.ok else 'FAILED'}: {self.name}: {self.detail}")

    def as_data(self) -> dict[str, Any]:
        return {"check": redact(self.name), "ok": self.ok, "detail": redact(self.detail)}


def check_health_url(
    url: str, timeout: float, expect: str | None = None, *, client: httpx.Client | None = None
) -> CheckResult:
    """GET ``url``: 2xx within ``timeout`` seconds (in all), with ``expect`` in the body."""
    name = f"GET {url}"
    started = time.monotonic()
    try:
        if client is None:
            with httpx.Client() as own:
                response = own.get(url, timeout=timeout)
        else:
            response = client.get(url, timeout=timeout)
    except httpx.TimeoutException:
        return CheckResult(name, False, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return CheckResult(name, False, f"cannot reach it: {_error(exc)}")
    return _judge(name, response, time.monotonic() - started, timeout, expect)


def _judge(
    name: str, response: httpx.Response, elapsed: float, timeout: float, expect: str | None
) -> CheckResult:
    took = f"in {elapsed:.2f} s"
    if not response.is_success:
        where = response.headers.get("location")
        extra = (
            f" (redirect to {where}; it must answer 2xx itself)" if where else _snippet(response)
        )
        return CheckResult(name, False, f"answered {response.status_code} {took}{extra}")
    if elapsed > timeout:
        return CheckResult(
            name,
            False,
            f"answered {response.status_code} after {elapsed:.1f} s, over {timeout:g} s",
        )
    if expect is not None and expect not in response.text:
        return CheckResult(
            name, False, f"answered {response.status_code} {took} without {expect!r} in its body"
        )
    return CheckResult(name, True, f"answered {response.status_code} {took}")


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:SNIPPET]
    return f": {text}" if text else ""


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def smoke_environment(env: EnvironmentConfig, target: DatabaseTarget | None) -> dict[str, str]:
    """The team's command variables; DATABASE_URL follows a database a step moved to."""
    variables = command_environment(env)
    if target is not None:
        variables["ROLLBOT_DATABASE_TARGET"] = target.label
        moved = os.environ.get(target.url_env) if target.url_env else None
        if moved:
            variables["DATABASE_URL"] = moved
    return variables


def run_smoke_command(
    env: EnvironmentConfig,
    shell: str,
    target: DatabaseTarget | None,
    on_line: Callable[[str], None],
) -> CheckResult:
    """Run the smoke command in ``[commands] workdir`` with its timeout; exit 0 passes."""
    name = f"smoke command `{shell}`"
    last: list[str] = []

    def keep(line: str) -> None:
        last[:] = [line] if line.strip() else last
        on_line(line)

    started = time.monotonic()
    timeout = env.commands.timeout_seconds
    code = run_streaming(shell, env.commands.workdir, timeout, smoke_environment(env, target), keep)
    elapsed = time.monotonic() - started
    if code == TIMEOUT_EXIT and elapsed >= timeout:
        return CheckResult(name, False, f"timed out after {timeout} s")
    said = f": {last[0][:SNIPPET]}" if last and code != 0 else ""
    return CheckResult(name, code == 0, f"exited {code} after {elapsed:.1f} s{said}")
