"""Incident commands for the terminal: list, audit, request approval, approve, run, tick,
resolve, cancel, step."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from rich.progress import TaskID
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.audit import format_timeline, timeline
from bot.executor import NullSink
from bot.models import Incident, Step
from bot.runbook import RUNBOOK
from bot.service import Rollbot, parse_ref
from bot.steps import StepResult
from handlers.incident_json import audit_json, incident_json, show_json
from handlers.jsonout import add_json_flag, emit
from handlers.progress import LiveProgress, is_terminal
from handlers.runtime import cli_actor, start_runtime


class TerminalSink(NullSink):
    """A line on stdout when a step starts and one when it ends; on a terminal, a live
    display of the running step's progress on stderr (a log gets no progress lines)."""

    def __init__(self, stream: TextIO | None = None, *, progress: bool = True) -> None:
        stream = stream or sys.stderr
        self.live = LiveProgress(stream) if progress and is_terminal(stream) else None
        self.tasks: dict[int, TaskID] = {}

    def step_started(self, incident: Incident, step: Step) -> None:
        print(f"[{incident.ref}] step {step.seq}: {step.title} ...", flush=True)
        if self.live is not None:
            self.tasks[step.id] = self.live.add(f"step {step.seq}: {step.title}")

    def step_progress(self, incident: Incident, step: Step, text: str) -> None:
        task = self.tasks.get(step.id)
        if self.live is not None and task is not None:
            self.live.say(task, text)

    def step_finished(self, incident: Incident, step: Step, result: StepResult) -> None:
        task = self.tasks.pop(step.id, None)
        if self.live is not None and task is not None:
            self.live.remove(task)
        mark = "ok" if result.ok else "FAILED"
        print(f"[{incident.ref}] step {step.seq} {mark}: {result.summary}", flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.close()


def add_actor_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--as",
        dest="actor",
        help="act as this identity (default: the one [cli.identities] maps your login to); "
        "honoured only when [cli.identities] maps your login to it",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("incidents", help="list open incidents")
    p.add_argument("--all", action="store_true", help="include resolved and cancelled")
    add_json_flag(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("audit", help="print an incident's timeline (audit trail)")
    p.add_argument("incident", help="incident id, e.g. INC-3")
    add_json_flag(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("request-approval", help="ask for approval of an incident's plan")
    p.add_argument("incident")
    add_actor_option(p)
    p.set_defaults(func=cmd_request_approval)

    p = sub.add_parser("approve", help="approve an incident's plan")
    p.add_argument("incident")
    add_actor_option(p)
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("run", help="start an approved incident and run its steps here")
    p.add_argument("incident")
    add_actor_option(p)
    p.add_argument(
        "--no-progress", action="store_true", help="no live progress display on a terminal"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("tick", help="tick (or --untick) a checklist item")
    p.add_argument("incident")
    p.add_argument("item", help="checklist item id (see `rollbot show INCIDENT`)")
    p.add_argument("--untick", action="store_true")
    add_actor_option(p)
    p.set_defaults(func=cmd_tick)

    p = sub.add_parser("resolve", help="resolve an incident")
    p.add_argument("incident")
    p.add_argument(
        "--confirm-unticked",
        action="store_true",
        help="resolve although checklist items are unticked",
    )
    add_actor_option(p)
    p.set_defaults(func=cmd_resolve)

    p = sub.add_parser("cancel", help="cancel an incident")
    p.add_argument("incident")
    p.add_argument("--reason", default="")
    add_actor_option(p)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("ack", help="acknowledge an incident's PagerDuty page (stops the paging)")
    p.add_argument("incident")
    add_actor_option(p)
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser(
        "step",
        help="decide about a step: retry|skip|abandon an interrupted one, done|abandon one waiting "
        "for a person",
    )
    p.add_argument("incident")
    p.add_argument("step", type=int, help="step number (seq) as shown by `rollbot show`")
    p.add_argument("decision", choices=["retry", "skip", "abandon", "done"])
    add_actor_option(p)
    p.set_defaults(func=cmd_step)

    p = sub.add_parser("show", help="show an incident: state, plan, steps, approvals, checklists")
    p.add_argument("incident")
    add_json_flag(p)
    p.set_defaults(func=cmd_show)


def all_incidents(bot: Rollbot) -> list[Incident]:
    """Open and closed, oldest first (``--all``: the core lists only open ones)."""
    with bot.store.read() as session:
        return list(
            session.scalars(
                select(Incident)
                .options(selectinload(Incident.steps), selectinload(Incident.approvals))
                .order_by(Incident.id)
            )
        )


def cmd_list(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    incidents = all_incidents(rt.bot) if args.all else rt.bot.open_incidents()
    if args.json:
        emit({"incidents": [incident_json(i) for i in incidents]})
        return 0
    if not incidents:
        print("no open incidents")
    for i in incidents:
        print(
            f"{i.ref:<8} {i.state:<18} {i.environment or '-':<12} {i.method or '-':<16} {i.description}"
        )
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    incident = rt.bot.get(args.incident)
    with rt.bot.store.session() as session:
        events = list(timeline(session, incident.id))
    if args.json:
        emit(audit_json(incident, events))
        return 0
    lines = format_timeline(events)
    print(f"{incident.ref}: {incident.description or '(no description)'} [{incident.state}]")
    print("\n".join(lines))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    bot = rt.bot
    i = bot.get(args.incident)
    if args.json:
        emit(show_json(bot, i))
        return 0
    print(
        f"{i.ref} [{i.state}] {i.environment or '-'} ({i.tier or '-'}) requested by {i.requester}"
    )
    print(f"  path: {' > '.join(i.answers) or '(not triaged)'}   method: {i.method or '-'}")
    if i.tier and i.plan_hash:
        valid, needed = bot.approval_status(i)
        print(f"  approvals: {valid}/{needed} valid")
    for s in i.steps:
        print(f"  step {s.seq} [{s.status}] {s.title}" + (f": {s.error}" if s.error else ""))
        for line in (s.result or {}).get("lines") or ():  # what a verify checked, and found
            print(f"      {line}")
    ticks = bot.ticks(i.id)
    for title, items in (("before", RUNBOOK.before_checklist), ("after", RUNBOOK.after_checklist)):
        print(f"  checklist ({title}):")
        for item in items:
            t = ticks.get(item.id)
            mark = "x" if t and t.ticked else " "
            print(f"    [{mark}] {item.id}: {item.text}")
    return 0


def cmd_request_approval(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    incident = rt.bot.request_approval(args.incident, cli_actor(rt, args.actor))
    valid, needed = rt.bot.approval_status(incident)
    print(f"{incident.ref} is {incident.state} ({valid}/{needed} approvals)")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    outcome = rt.bot.approve(args.incident, cli_actor(rt, args.actor))
    ref = outcome.incident.ref
    print(
        f"{ref}: approved ({outcome.valid}/{outcome.needed})"
        + (f"; run: rollbot run {ref}" if outcome.satisfied else "")
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    incident = rt.bot.get(args.incident)
    if incident.state != "running":
        incident = rt.bot.start(args.incident, cli_actor(rt, args.actor))
    sink = TerminalSink(progress=not args.no_progress)
    try:
        incident = rt.executor.run_incident(incident.id, sink)
    finally:
        sink.close()
    print(f"{incident.ref} is {incident.state}")
    return 0 if incident.state in ("verifying", "resolved") else 1


def cmd_tick(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    rt.bot.tick(args.incident, args.item, cli_actor(rt, args.actor), ticked=not args.untick)
    print(f"INC-{parse_ref(args.incident)}: {'unticked' if args.untick else 'ticked'} {args.item}")
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    incident = rt.bot.resolve(
        args.incident, cli_actor(rt, args.actor), confirm_unticked=args.confirm_unticked
    )
    print(f"{incident.ref} resolved")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    incident = rt.bot.cancel(args.incident, cli_actor(rt, args.actor), args.reason)
    print(f"{incident.ref} cancelled")
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    incident = rt.bot.acknowledge_page(args.incident, cli_actor(rt, args.actor))
    print(f"{incident.ref} page acknowledged")
    return 0


def cmd_step(args: argparse.Namespace) -> int:
    rt = start_runtime(args.config)
    incident = rt.bot.get(args.incident)
    step = next((s for s in incident.steps if s.seq == args.step), None)
    if step is None:
        from bot.errors import NotFoundError

        raise NotFoundError(f"{incident.ref} has no step {args.step}")
    incident = rt.bot.decide_step(incident.id, step.id, cli_actor(rt, args.actor), args.decision)
    print(f"{incident.ref} step {args.step}: {args.decision}; incident is {incident.state}")
    return 0
