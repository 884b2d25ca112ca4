"""Choosing what a restore restores, from a terminal: ``rollbot plan`` and ``rollbot restore``.

``plan INC METHOD`` draws up (or again) an incident's plan with the options a person
picked: a snapshot, a restore time, and the explicit restore options the plan then
states (another database's snapshot, no owners/grants). A new plan voids approvals.
``restore undo INC`` opens a follow-up incident whose plan swaps the database INC's
restore kept back in; it is approved and run like any other. ``restore sources INC`` lists what the incident's restore could restore from (data on
stdout, one snapshot per line, tab-separated).
"""

from __future__ import annotations

import argparse

from handlers.commands.incidents import add_actor_option
from handlers.runtime import cli_actor, start_runtime


def _restore_options(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--snapshot", help="restore this snapshot (see `rollbot restore sources`)")
    which.add_argument(
        "--restore-to",
        metavar="TIME",
        help="restore to TIME (2026-12-02 14:30 in the team's time zone, or ISO with an "
        "offset): point-in-time where the platform has it, else the newest snapshot before",
    )
    p.add_argument(
        "--accept-other-source",
        action="store_true",
        help="confirm restoring a snapshot of another database or server (the plan says so)",
    )
    p.add_argument("--no-owner", action="store_true", help="restore objects without their owners")
    p.add_argument("--no-acl", action="store_true", help="restore objects without their grants")
    p.add_argument(
        "--into-new",
        action="store_true",
        help="restore into a new branch or instance (e.g. Neon's restored-YYYYMMDD-HHMMSS) and "
        "point the app at it, leaving the current one as it is",
    )
    p.add_argument(
        "--in-place",
        action="store_true",
        help="pgBackRest: restore over the live cluster (--delta) after a verified safety "
        "backup, instead of into a new cluster that is verified before the switch",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", help="choose an incident's method (again) with restore options; voids approvals"
    )
    p.add_argument("incident")
    p.add_argument("method", nargs="?", help="runbook method id (default: the current one)")
    _restore_options(p)
    add_actor_option(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("restore", help="what an incident's restore restores")
    rsub = p.add_subparsers(dest="restore_command", required=True)
    s = rsub.add_parser("sources", help="snapshots the incident's restore could restore from")
    s.add_argument("incident")
    s.set_defaults(func=cmd_sources)
    u = rsub.add_parser(
        "undo", help="open an incident that swaps the database a restore kept back in"
    )
    u.add_argument("incident", help="the incident whose restore to undo")
    add_actor_option(u)
    u.set_defaults(func=cmd_undo)


def _options(args: argparse.Namespace, timezone: str) -> dict[str, object]:
    from bot.restore_choice import RESTORE_FLAGS, parse_restore_time

    options: dict[str, object] = {k: True for k in RESTORE_FLAGS if getattr(args, k)}
    if args.snapshot:
        options["snapshot"] = args.snapshot
    if args.restore_to:
        options["restore_to"] = parse_restore_time(args.restore_to, timezone).isoformat()
    return options


def cmd_plan(args: argparse.Namespace) -> int:
    from bot.errors import RollbotError

    rt = start_runtime(args.config)
    incident = rt.bot.get(args.incident)
    method = args.method or incident.method
    if not method:
        raise RollbotError(f"{incident.ref} has no method yet; name one: rollbot plan INC METHOD")
    options = _options(args, rt.settings.business_hours.timezone)
    incident = rt.bot.choose_method(incident.id, method, cli_actor(rt, args.actor), options)
    print(f"{incident.ref}: plan for {incident.method} ({incident.state}); approvals start over")
    for step in incident.steps:
        print(f" {step.seq}. {step.plan_text}")
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    for source in rt.bot.restore_sources(args.incident):
        marks = ",".join(m for m in ("chosen" if source.chosen else "", source.warning or "") if m)
        print(f"{source.name}\t{source.label}\t{marks}")
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    undo = rt.bot.open_undo(args.incident, cli_actor(rt, args.actor), source="cli")
    print(f"{undo.ref} opened to undo the restore of {args.incident.upper()} ({undo.state})")
    for step in undo.steps:
        print(f" {step.seq}. {step.plan_text}")
    print(f"  next: rollbot request-approval {undo.ref}, then rollbot approve {undo.ref}")
    return 0
