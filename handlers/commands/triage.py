"""``rollbot triage --env NAME``: the runbook's "migration hangs" scenario from a terminal.

Lists the database's backends and the blocking tree; ``--cancel PID`` or
``--terminate PID`` ends one listed backend after showing the plan and asking.
Production is refused here: ending a production backend goes through an
incident and its approvals, not a terminal prompt.
"""

from __future__ import annotations

import argparse
import sys

from bot.config import load_settings
from bot.redact import redact
from providers.postgres.triage import activity, cancel, plan, terminate


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
    p.set_defaults(func=run)


def _confirm(pid: str) -> bool:
    try:
        answer = input(f"Type the PID ({pid}) to confirm, anything else to abort: ")
    except EOFError:
        return False
    return answer.strip() == pid.strip()


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    env = settings.resolve_environment(args.env)
    url = env.database_url()
    listing = activity(url)
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
