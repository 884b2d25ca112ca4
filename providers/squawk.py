"""Risk check of migration files with squawk, the PostgreSQL migration linter.

Why squawk: it parses PostgreSQL's grammar and knows which statements take
long locks or break running application code, so the runbook's prevention
practices ("additive changes first") become a mechanical check before a deploy.
The ``squawk-cli`` package ships the binary (``.venv/bin/squawk``).

Findings are split in two: *blocking* ones break running code or lock a table
for long (dropping a column, NOT NULL without a default, a non-concurrent index,
a type change that rewrites the table, ...) and need an explicit, audited
override in production; *advice* (timeouts, ``IF NOT EXISTS``, ...) is only shown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import ProviderError
from bot.redact import redact

# Rules whose findings block a production deploy unless a person overrides them.
BLOCKING_RULES: dict[str, str] = {
    "ban-drop-column": "drops a column: running code that reads it breaks, its data is gone",
    "ban-drop-table": "drops a table: running code that uses it breaks, its data is gone",
    "ban-drop-database": "drops a database",
    "ban-truncate-cascade": "TRUNCATE ... CASCADE empties related tables too",
    "adding-required-field": "adds a NOT NULL column without a default: old code's inserts fail",
    "adding-not-nullable-field": "sets NOT NULL: scans the table under an exclusive lock",
    "require-concurrent-index-creation": "creates an index without CONCURRENTLY: blocks writes",
    "require-concurrent-index-deletion": "drops an index without CONCURRENTLY: blocks reads and writes",
    "changing-column-type": "changes a column type: rewrites the table under an exclusive lock",
    "renaming-column": "renames a column: running code that uses the old name breaks",
    "renaming-table": "renames a table: running code that uses the old name breaks",
    "adding-field-with-default": "adds a column with a volatile default: rewrites the table",
    "syntax-error": "squawk cannot parse this statement",
}


class SquawkNotFoundError(ProviderError):
    """The squawk binary is not installed next to this Python or on PATH."""


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 1-based
    rule: str
    message: str
    help: str | None = None

    @property
    def blocking(self) -> bool:
        return self.rule in BLOCKING_RULES

    def __str__(self) -> str:
        why = BLOCKING_RULES.get(self.rule)
        text = f"{self.file}:{self.line}: {self.rule}: {why or self.message}"
        return redact(text + (f" ({self.help})" if self.help and not why else ""))


@dataclass
class RiskReport:
    files: list[str]
    findings: list[Finding] = field(default_factory=list)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    @property
    def advice(self) -> list[Finding]:
        return [f for f in self.findings if not f.blocking]

    def lines(self) -> list[str]:
        if not self.files:
            return ["risk check: no pending migrations"]
        out = [
            f"risk check (squawk) of {len(self.files)} pending migration(s): "
            f"{len(self.blocking)} blocking finding(s), {len(self.advice)} advice"
        ]
        out += [f"  BLOCKING {f}" for f in self.blocking]
        if self.advice:
            counts = Counter(f.rule for f in self.advice)
            out.append(
                "  advice: " + ", ".join(f"{rule} x{n}" for rule, n in sorted(counts.items()))
            )
        return out


def find_squawk() -> str:
    """The squawk binary: next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("squawk")
    if found:
        return found
    raise SquawkNotFoundError(
        "the squawk binary is not installed (it comes with the squawk-cli package: "
        "`uv sync` or `pip install squawk-cli`)"
    )


def check_files(
    paths: Sequence[Path], pg_version: str | None = None, timeout: float = 120
) -> RiskReport:
    """Lint ``paths`` as drizzle runs them (all pending files in one transaction)."""
    report = RiskReport(files=[p.name for p in paths])
    if not paths:
        return report
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise ProviderError(f"risk check: migration file(s) not found: {', '.join(missing)}")
    cmd = [find_squawk(), "--reporter", "json", "--assume-in-transaction"]
    if pg_version:
        cmd.append(f"--pg-version={pg_version}")
    cmd += [str(p) for p in paths]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise ProviderError(f"risk check: squawk did not finish within {timeout:.0f}s") from None
    order = {p.name: i for i, p in enumerate(paths)}
    findings = parse_json_report(proc.stdout, proc.stderr)
    report.findings = sorted(findings, key=lambda f: (order.get(f.file, len(order)), f.line))
    return report


def parse_json_report(stdout: str, stderr: str = "") -> list[Finding]:
    """Squawk's ``--reporter json`` output (0-based lines) as findings (1-based lines)."""
    text = stdout.strip()
    try:
        rows = json.loads(text) if text else []
    except json.JSONDecodeError:
        rows = None
    if not isinstance(rows, list):
        detail = (stderr.strip() or text).splitlines()
        raise ProviderError(
            "risk check: squawk failed: " + redact(detail[0] if detail else "no output")
        )
    return [
        Finding(
            file=Path(str(r.get("file", "?"))).name,
            line=int(r.get("line", 0)) + 1,
            rule=str(r.get("rule_name", "unknown")),
            message=str(r.get("message", "")),
            help=r.get("help") or None,
        )
        for r in rows
        if isinstance(r, dict)
    ]
