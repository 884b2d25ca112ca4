"""``rollbot runbook``: print the runbook the bot follows, as Markdown.

The bot's runbook is data (``bot.runbook``); this is how a person reads or
diffs it against the team's document.
"""

from __future__ import annotations

import argparse

from bot.runbook_markdown import render_markdown


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runbook", help="print the rollback runbook the bot follows (Markdown)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(render_markdown(), end="")
    return 0
