"""``rollbot shell``: walk the runbook in the terminal and record a real incident."""

from __future__ import annotations

import argparse

from handlers.console import run_shell
from handlers.runtime import cli_actor, start_runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shell", help="walk the runbook's decision tree in the terminal")
    p.add_argument(
        "--as",
        dest="actor",
        help="act as this identity; honoured only when [cli.identities] maps your login to it",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    runtime = start_runtime(args.config)
    return run_shell(runtime.bot, cli_actor(runtime, args.actor))
