"""``rollbot postmortem INC``: the runbook's "schedule the post-mortem".

Writes ``postmortem-INC-n.md`` (the draft, from the incident's record: ``bot.postmortem``)
and ``postmortem-INC-n.ics`` (an invite for the first business-hours slot at least
``--delay-days`` from now: ``bot.meeting_slot``, ``providers.calendar_invite``) into
``--output``, and prints their paths (``--json``: one object with the paths and the slot).
It changes nothing about the incident, so whoever may read incidents may run it; the
draft is recorded in the audit trail. Notes go to stderr, data to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from bot.errors import RollbotError
from bot.meeting_slot import MeetingSlot, first_slot
from bot.postmortem import (
    AUDIT_KIND,
    default_delay,
    draft_filename,
    gather,
    render_markdown,
    thread_link,
)
from handlers.commands.incidents import add_actor_option
from handlers.jsonout import add_json_flag, emit, iso
from handlers.runtime import cli_actor, start_runtime
from providers.calendar_invite import postmortem_invite

DEFAULT_LENGTH_MINUTES = 60


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "postmortem",
        help="write an incident's post-mortem draft (Markdown) and a calendar invite (.ics)",
        description=(
            "Writes postmortem-INC-n.md, a draft from the incident's record (decision path, "
            "method, approvals, steps, checklists, notices, timeline), and postmortem-INC-n.ics, "
            "an invite for the first slot in [business_hours] at least the delay from now. "
            "Prints the two paths."
        ),
    )
    p.add_argument("incident", help="incident id, e.g. INC-3")
    p.add_argument(
        "--output",
        metavar="DIR",
        default=".",
        help="directory to write the two files into (default: the current directory)",
    )
    p.add_argument(
        "--delay-days",
        type=float,
        metavar="N",
        help="earliest meeting this many days from now "
        "(default: [reminders] postmortem_after_days, else 2)",
    )
    p.add_argument(
        "--length-minutes",
        type=int,
        metavar="M",
        default=DEFAULT_LENGTH_MINUTES,
        help=f"meeting length; it must fit before business hours end (default: {DEFAULT_LENGTH_MINUTES})",
    )
    add_actor_option(p)
    add_json_flag(p, "print one JSON object on stdout: the two paths and the slot (UTC)")
    p.set_defaults(func=cmd_postmortem)


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _describe(slot: MeetingSlot) -> str:
    local, end = slot.local_start, slot.local_end
    return (
        f"{local:%a %Y-%m-%d %H:%M}-{end:%H:%M} {slot.timezone} "
        f"({iso(slot.start)} to {iso(slot.end)})"
    )


def cmd_postmortem(args: argparse.Namespace) -> int:
    if args.delay_days is not None and not 0 <= args.delay_days <= 365:
        raise RollbotError(f"--delay-days must be between 0 and 365, not {args.delay_days:g}")
    if not 1 <= args.length_minutes <= 24 * 60:
        raise RollbotError(
            f"--length-minutes must be between 1 and 1440, not {args.length_minutes}"
        )
    rt = start_runtime(args.config)
    bot, settings = rt.bot, rt.settings
    facts = gather(bot, args.incident)  # an unknown incident: NotFoundError, one line
    incident = facts.incident
    actor = cli_actor(rt, args.actor)
    delay = (
        timedelta(days=args.delay_days) if args.delay_days is not None else default_delay(settings)
    )
    now = bot.clock()
    slot = first_slot(
        now,
        settings.business_hours,
        delay=delay,
        length=timedelta(minutes=args.length_minutes),
    )

    directory = Path(args.output)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RollbotError(f"cannot create {directory}: {exc.strerror or exc}") from None
    draft_path = directory / draft_filename(incident.ref, "md")
    invite_path = directory / draft_filename(incident.ref, "ics")
    markdown = render_markdown(facts, slot)
    earlier = sum(1 for e in facts.events if e.kind == AUDIT_KIND)
    invite = postmortem_invite(
        incident_id=incident.id,
        ref=incident.ref,
        start=slot.start,
        end=slot.end,
        stamp=now,
        headline=incident.description or "",
        thread_link=thread_link(incident.chat_channel, incident.chat_thread),
        draft_name=draft_path.name,
        details=f"Environment: {incident.environment or '-'} ({incident.tier or '-'}); "
        f"requested by {incident.requester}.",
        sequence=earlier,
    )
    for path, data in ((draft_path, markdown.encode("utf-8")), (invite_path, invite)):
        try:
            _write(path, data)
        except OSError as exc:
            raise RollbotError(f"cannot write {path}: {exc.strerror or exc}") from None

    bot.note(
        incident.id,
        actor,
        AUDIT_KIND,
        f"{incident.ref} post-mortem draft written by {actor}: {draft_path.name}; "
        f"meeting proposed for {iso(slot.start)}",
        {
            "draft": str(draft_path),
            "invite": str(invite_path),
            "start": iso(slot.start),
            "end": iso(slot.end),
            "sequence": earlier,
        },
    )
    # The after-rollback "Schedule post-mortem" is done once an invite exists (still open
    # incidents only: a resolved one keeps its checklist as it was).
    bot.auto_tick(
        incident.id, "after.post_mortem", f"invite for {iso(slot.start)} in {invite_path.name}"
    )
    if args.json:
        emit(
            {
                "incident": incident.ref,
                "draft": str(draft_path),
                "invite": str(invite_path),
                "start": iso(slot.start),
                "end": iso(slot.end),
                "timezone": slot.timezone,
            }
        )
    else:
        print(draft_path)
        print(invite_path)
    print(f"{incident.ref}: post-mortem meeting proposed for {_describe(slot)}", file=sys.stderr)
    return 0
