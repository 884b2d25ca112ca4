"""``rollbot triage --env NAME``: the runbook's "migration hangs" scenario from a terminal.

Lists the database's backends and the blocking tree; ``--cancel PID`` or
``--terminate PID`` ends one listed backend after showing the plan and asking.
Production is refused here: ending a production backend goes through an
incident and its approvals, not a terminal prompt. ``--json`` prints the listing
as one object (docs/cli-json.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot.config import EnvironmentConfig
from bot.errors import RollbotError
from bot.redact import redact
from handlers.jsonout import add_json_flag, emit, iso
from handlers.runtime import load_config
from providers.postgres.triage import ActivityListing, Backend, activity, cancel, plan, terminate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "triage",
        help="show blocked/long-running queries and the blocking tree; cancel or terminate one",
    )
    p.add_argument("--env", required=True, metavar="NAME", help="environment (or tier) to inspect")
    action = p.add_mutually_exclusive_group()
    action.add_argument(
        "--cancel", metavar="PID", help="cancel the running statement of a listed backend"
    )
    action.add_argument(
        "--terminate",
        metavar="PID",
        help="disconnect a listed backend (its open transaction is rolled back)",
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_json_flag(
        p, "print the listing as one JSON object on stdout (not with --cancel/--terminate)"
    )
    p.set_defaults(func=run)


def _confirm(pid: str) -> bool:
    try:
        answer = input(f"Type the PID ({pid}) to confirm, anything else to abort: ")
    except EOFError:
        return False
    return answer.strip() == pid.strip()


def backend_json(b: Backend) -> dict[str, Any]:
    return {
        "pid": b.pid,
        "user": b.user,
        "application": b.application,
        "client": b.client,
        "state": b.state,
        "wait_event": b.wait_event,
        "backend_start": iso(b.backend_start),
        "query_start": iso(b.query_start),
        "query_seconds": b.query_seconds,
        "transaction_seconds": b.xact_seconds,
        "query": b.query,
        "blocked_by": list(b.blocked_by),
        "locks": [
            {"locktype": x.locktype, "target": x.target, "mode": x.mode, "granted": x.granted}
            for x in b.locks
        ],
    }


def listing_json(env: EnvironmentConfig, listing: ActivityListing) -> dict[str, Any]:
    """The listing as data; ``roots`` are the pids to consider ending, ``tree`` the text."""
    return {
        "environment": env.name,
        "tier": env.tier,
        "database": listing.database,
        "taken_at": iso(listing.taken_at),
        "own_pid": listing.own_pid,
        "backends": [backend_json(b) for b in listing.backends],
        "roots": [b.pid for b in listing.roots],
        "tree": listing.tree_lines(),
    }


def run(args: argparse.Namespace) -> int:
    if args.json and (args.cancel is not None or args.terminate is not None):
        raise RollbotError("--json only lists; drop it to --cancel or --terminate a backend")
    settings = load_config(args.config)
    env = settings.resolve_environment(args.env)
    url = env.database_url()
    listing = activity(url)
    if args.json:
        emit(listing_json(env, listing))
        return 0
    print(f"environment {env.name} ({env.tier})")
    for line in listing.lines():
        print(redact(line))
    pid = args.cancel if args.cancel is not None else args.terminate
    if pid is None:
        return 0
    action = "cancel" if args.cancel is not None else "terminate"
    if env.tier == "production":
        print(
            f"rollbot: {env.name} is production: {action} must go through an incident and its "
            "approval (/rollback in Slack or `rollbot shell`), not this prompt",
            file=sys.stderr,
        )
        return 2
    preview = plan(listing, pid, action)  # validates the PID before anything is asked
    print()
    print(redact(preview))
    if not args.yes and not _confirm(str(pid)):
        print("aborted; nothing was done")
        return 1
    do = cancel if action == "cancel" else terminate
    result = do(url, pid, listing)
    print(redact(str(result)))
    return 0 if result.confirmed else 1
