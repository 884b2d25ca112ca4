"""``rollbot drill``: the runbook's quarterly drill on a throwaway PostgreSQL (no Slack, no cloud),
or with ``--env NAME`` on a throwaway branch of a Neon environment (its two Neon methods), or,
with ``--env NAME --allow-cost``, a PITR of an RDS or Cloud SQL environment into a new
instance that is verified and deleted (``handlers/drill/managed.py``).

Exit 0 when every method was verified (and every branch or instance the drill made was
deleted), 1 when not, 2 on bad input (like every rollbot command) or when no PostgreSQL
binaries are installed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import RollbotError
from bot.redact import redact

if TYPE_CHECKING:
    from bot.config import Settings
    from handlers.drill.runner import DrillResult

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|k|m|g)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "k": 1_000, "kb": 1_000, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9}
DEFAULT_SIZE = "300MB"
MIN_SIZE = 1_000_000
MAX_SIZE = 50 * 10**9
MANAGED = ("rds", "cloudsql")  # restore into a new instance: handlers/drill/managed.py


def parse_size(text: str) -> int:
    """``300MB``, ``1.5GB``, ``3mb``, ``500000`` -> bytes; a clear error for anything else."""
    match = _SIZE.match(text or "")
    if not match:
        raise RollbotError(f"--size {text!r} is not a size like 300MB or 1.5GB")
    value = float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise RollbotError(f"--size {text!r} must be between 1MB and 50GB")
    return int(value)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "drill",
        help="the quarterly rollback drill: break a throwaway database, practise every method, time it",
    )
    p.add_argument(
        "--env",
        metavar="NAME",
        help="drill an environment of the configuration instead: on Neon both Neon methods on "
        "a throwaway child branch of its branch; on RDS or Cloud SQL a point-in-time restore "
        "into a new instance (with --allow-cost); whatever the drill makes is deleted "
        "afterwards and the environment's own database is never changed",
    )
    p.add_argument(
        "--allow-cost",
        action="store_true",
        help="with --env on RDS or Cloud SQL: allow the drill to create a billable instance "
        "(deleted at the end)",
    )
    p.add_argument("--size", help="size of the generated database (default 300MB)")
    p.add_argument(
        "--migrations",
        metavar="DIR",
        type=Path,
        help="the team's drizzle migrations folder (default: the example shipped with rollbot); "
        "its newest migration is the one broken and rolled back",
    )
    p.add_argument(
        "--output",
        metavar="DIR",
        type=Path,
        default=Path("drill-output"),
        help="where the report, audit log and state go (default ./drill-output)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the snapshots, work folders and the PostgreSQL data directory in the output",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.env:
        return run_env(args)
    if args.allow_cost:
        raise RollbotError("--allow-cost is for --env on RDS or Cloud SQL environments")
    from handlers.drill.runner import DrillOptions, run_drill

    size = parse_size(args.size if args.size is not None else DEFAULT_SIZE)
    if args.migrations is not None and not (args.migrations / "meta" / "_journal.json").is_file():
        raise RollbotError(
            f"--migrations {args.migrations}: no meta/_journal.json there (is it a drizzle folder?)"
        )
    options = DrillOptions(
        size_bytes=size, migrations=args.migrations, output=args.output, keep=args.keep
    )
    result = run_drill(options, echo)
    code = report(result, options.output.resolve())
    record_result(args.config, result, options.output.resolve())
    return code


def run_env(args: argparse.Namespace) -> int:
    """By the environment's provider: Neon's drill, the managed one, or one line."""
    from handlers.runtime import load_config

    refuse_local_flags(args)
    settings = load_config(args.config)
    env = settings.environment(args.env)
    if env.provider == "neon":
        return run_neon(args, settings)
    if env.provider in MANAGED:
        return run_managed(args, settings)
    raise RollbotError(
        f"environment {env.name!r} uses provider {env.provider!r}: `rollbot drill --env` drills "
        "Neon, RDS and Cloud SQL environments (without --env the drill runs on a local "
        "PostgreSQL)"
    )


def refuse_local_flags(args: argparse.Namespace) -> None:
    local_only = [
        flag
        for flag, given in (
            ("--size", args.size is not None),
            ("--migrations", args.migrations is not None),
            ("--keep", args.keep),
        )
        if given
    ]
    if local_only:
        raise RollbotError(
            f"{', '.join(local_only)}: only for the local drill; --env drills the "
            "environment's own data and migrations folder, and always deletes what it made"
        )


def run_neon(args: argparse.Namespace, settings: Settings) -> int:
    from handlers.drill.neon import run_neon_drill

    result = run_neon_drill(settings, args.env, args.output, echo)
    code = report(result, result.output)
    record_result(args.config, result, result.output, args.env)
    if result.leftovers:
        print(
            f"rollbot: the drill FAILED: {len(result.leftovers)} branch(es) left behind "
            "(see the report); delete them in the Neon console",
            file=sys.stderr,
        )
    return code


def run_managed(args: argparse.Namespace, settings: Settings) -> int:
    """RDS / Cloud SQL: refused without --allow-cost, before any API call."""
    from handlers.drill.managed import cost_refusal, run_managed_drill

    env = settings.environment(args.env)
    if not args.allow_cost:
        raise RollbotError(cost_refusal(env))
    result = run_managed_drill(settings, args.env, args.output, echo)
    code = report(result, result.output)
    record_result(args.config, result, result.output, args.env)
    for leftover in result.leftovers:
        print(f"rollbot: the drill FAILED: left behind: {redact(leftover)}", file=sys.stderr)
    return code


def record_result(
    config: str | None, result: DrillResult, output: Path, env: str | None = None
) -> None:
    """The drill's outcome in the team's audit trail (the Home tab shows the last one), when
    there is a team configuration; the local drill's own state stays in its output."""
    from bot.config import default_config_path
    from handlers.runtime import start_runtime

    if config is None and default_config_path() is None:
        return
    verified = sum(o.verified for o in result.outcomes)
    runtime = start_runtime(config)
    try:
        runtime.bot.note(
            None,
            "rollbot drill",
            "drill",
            f"{'passed' if result.ok else 'FAILED'}: {verified}/{len(result.outcomes)} methods "
            f"verified{f' on {env}' if env else ' (local)'}; report in {output}",
            {"ok": result.ok, "verified": verified, "methods": len(result.outcomes)},
        )
    finally:
        runtime.bot.store.dispose()


def echo(line: str) -> None:
    print(redact(line), flush=True)


def report(result: DrillResult, output: Path) -> int:
    """The reports, the terminal table; 0 when the drill passed, else 1."""
    from handlers.drill.report import terminal_table, write_reports

    md, page = write_reports(result, output)
    print()
    print(terminal_table(result))
    print()
    print(redact(f"report: {md}"))
    print(redact(f"report: {page}"))
    if not result.outcomes or not all(o.verified for o in result.outcomes):
        print("rollbot: the drill FAILED: not every method was verified", file=sys.stderr)
    return 0 if result.ok else 1
