"""``rollbot pitr status --env NAME``: what a point-in-time restore could restore.

Runs ``pgbackrest check`` and ``pgbackrest info --output=json`` for the environment's
stanza and shows its backups and the restorable window (oldest backup start -> newest
archived WAL). A failing or lagging archive is a warning and exit code 1.
"""

from __future__ import annotations

import argparse
import sys

from bot.redact import redact
from handlers.jsonout import add_json_flag, emit, iso
from handlers.runtime import load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pitr", help="point-in-time restore: backups and the restorable window")
    psub = p.add_subparsers(dest="pitr_command", required=True)
    s = psub.add_parser("status", help="pgbackrest check + info: backups, window, archive health")
    s.add_argument("--env", required=True, metavar="NAME", help="environment from the config")
    s.add_argument("--no-check", action="store_true", help="skip `pgbackrest check`")
    add_json_flag(s)
    s.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from providers.pgbackrest.status import status

    env = load_config(args.config).environment(args.env)
    found = status(env, run_check=not args.no_check)
    if args.json:
        w = found.window
        emit(
            {
                "environment": env.name,
                "stanza": found.stanza,
                "backups": [
                    {
                        "label": b.label,
                        "type": b.type,
                        "started": iso(b.started),
                        "stopped": iso(b.stopped),
                        "size": b.size,
                    }
                    for b in (w.backups if w else [])
                ],
                "window": {"start": iso(w.start), "end": iso(w.end)} if w else None,
                "warnings": found.warnings,
            }
        )
    else:
        for line in found.lines():
            print(redact(line))
    for warning in found.warnings:
        print(f"rollbot: warning: {redact(warning)}", file=sys.stderr)
    return 1 if found.warnings else 0
