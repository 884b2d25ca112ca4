"""The post-mortem draft: everything the incident's record says, as Markdown for the team.

The runbook's last step is "Schedule post-mortem"; this writes what the meeting starts
from. :func:`gather` reads the store once (the incident with its steps and approvals, the
checklist ticks, the audit timeline, the notices sent) into :class:`PostmortemFacts`;
:func:`render_markdown` turns those facts into the draft and is pure, so it can be tested
and reused (a Slack upload, a wiki page) without a store. The decision path is told in
the runbook's words, the method by its title, every time in UTC and in the team's time
zone (``[business_hours] timezone``). Everything written passes through
:func:`bot.redact.redact`: a password in a description or a step's output never reaches
the draft. The sections people write (what went well, what went wrong, action items) are
headings with empty bullets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.audit import timeline
from bot.errors import RollbotError
from bot.lifecycle import in_words
from bot.meeting_slot import MeetingSlot
from bot.methods import method_title
from bot.models import AuditEvent, ChecklistTick, Incident, OutboxItem
from bot.redact import redact
from bot.runbook import RUNBOOK, Choice, DecisionNode

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.service import Rollbot

DEFAULT_DELAY_DAYS = 2
HEADLINE_LIMIT = 100  # the title's share of the description (the summary has all of it)
AUDIT_KIND = "postmortem"
TO_BE_WRITTEN = "_To be written: what made the migration fail, and why it was not caught earlier._"


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class PathStep:
    """One answer of the decision tree: the question asked and the runbook's label."""

    question: str
    answer: str


@dataclass(frozen=True)
class PostmortemFacts:
    """What the draft is made of, read from the store by :func:`gather`."""

    incident: Incident
    events: Sequence[AuditEvent]
    ticks: Mapping[str, ChecklistTick]
    notices: Sequence[OutboxItem]
    timezone: str = "UTC"
    generated_at: datetime | None = None


def gather(bot: Rollbot, ref: int | str) -> PostmortemFacts:
    """The incident ``ref`` and everything recorded about it (NotFoundError if none)."""
    incident = bot.get(ref)
    with bot.store.read() as session:
        events = list(timeline(session, incident.id))
        notices = list(
            session.scalars(
                select(OutboxItem)
                .where(OutboxItem.incident_id == incident.id)
                .order_by(OutboxItem.id)
            )
        )
    return PostmortemFacts(
        incident=incident,
        events=events,
        ticks=bot.ticks(incident.id),
        notices=notices,
        timezone=bot.settings.business_hours.timezone,
        generated_at=bot.clock(),
    )


def draft_markdown(bot: Rollbot, ref: int | str, meeting: MeetingSlot | None = None) -> str:
    """The post-mortem draft of incident ``ref`` (NotFoundError if there is none)."""
    return render_markdown(gather(bot, ref), meeting)


def default_delay(settings: Settings) -> timedelta:
    """How long after now the post-mortem meets: ``[reminders] postmortem_after_days`` when
    this build has it, else :data:`DEFAULT_DELAY_DAYS`."""
    reminders = getattr(settings, "reminders", None)
    days = getattr(reminders, "postmortem_after_days", None)
    return timedelta(days=days if isinstance(days, int | float) else DEFAULT_DELAY_DAYS)


def draft_filename(ref: str, suffix: str = "md") -> str:
    """``postmortem-INC-3.md`` (or ``.ics`` with ``suffix="ics"``)."""
    return f"postmortem-{ref}.{suffix}"


def thread_link(channel: str | None, ts: str | None) -> str | None:
    """The Slack permalink of the incident's thread, or None before it has one."""
    if not channel or not ts:
        return None
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def decision_path(answers: Sequence[str]) -> tuple[list[PathStep], str]:
    """The answers in the runbook's words, and the leaf's arrow text ("" before a leaf).

    An answer the runbook no longer knows (it was edited since) is kept as its id."""
    steps: list[PathStep] = []
    node: DecisionNode | Choice = RUNBOOK.node(RUNBOOK.root)
    for answer in answers:
        if not isinstance(node, DecisionNode):
            break
        try:
            choice = node.choice(str(answer))
            following = RUNBOOK.node(choice.next_node) if choice.next_node else choice
        except RollbotError:
            steps.append(PathStep(node.question, f"{answer} (no longer in the runbook)"))
            break
        steps.append(PathStep(node.question, choice.label))
        node = following
    outcome = node.summary if isinstance(node, Choice) else ""
    return steps, outcome


def path_summary(answers: Sequence[str]) -> str:
    """One line, as the Slack card shows it: labels, then the leaf's arrow text."""
    steps, outcome = decision_path(answers)
    labels = [s.answer for s in steps] + ([outcome] if outcome else [])
    return " → ".join(labels) if labels else "(not triaged)"


def format_duration(delta: timedelta | None) -> str:
    """``2 d 3 h``, ``1 h 05 min``, ``4 min 10 s``, ``12 s``; "-" when unknown."""
    if delta is None:
        return "-"
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _between(start: datetime | None, end: datetime | None) -> timedelta | None:
    return end - start if start is not None and end is not None else None


# --------------------------------------------------------------------------- rendering


class _Times:
    """Times in UTC and in the team's zone."""

    def __init__(self, zone_name: str) -> None:
        self.name = zone_name
        self.zone = ZoneInfo(zone_name)

    def utc(self, moment: datetime | None) -> str:
        if moment is None:
            return "-"
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def local(self, moment: datetime | None) -> str:
        if moment is None:
            return "-"
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S %Z")

    def both(self, moment: datetime | None) -> str:
        if moment is None:
            return "-"
        if self.name == "UTC":
            return self.utc(moment)
        return f"{self.utc(moment)} ({self.local(moment)}, {self.name})"


def _text(value: object) -> str:
    """Redacted, on one line."""
    return " ".join(redact("" if value is None else value).split())


def _cell(value: object) -> str:
    """Redacted, on one line, safe in a Markdown table cell."""
    return _text(value).replace("|", "\\|") or "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _fenced(text: str) -> list[str]:
    body = redact(text).rstrip("\n")
    fence = "````" if "```" in body else "```"
    return [f"{fence}text", *body.splitlines(), fence]


def _requested_approval(events: Sequence[AuditEvent]) -> list[AuditEvent]:
    return [
        e
        for e in events
        if e.kind == "transition" and (e.data or {}).get("to") == "awaiting_approval"
    ]


def render_markdown(facts: PostmortemFacts, meeting: MeetingSlot | None = None) -> str:
    """The draft as Markdown (redacted); ``meeting`` is the slot proposed for it, if any."""
    i = facts.incident
    t = _Times(facts.timezone)
    steps = sorted(i.steps, key=lambda s: s.seq)
    out: list[str] = []
    add = out.append

    headline = _text(i.description) or "database rollback"
    if len(headline) > HEADLINE_LIMIT:
        headline = headline[: HEADLINE_LIMIT - 1] + "…"
    add(f"# Post-mortem: {i.ref} — {headline}")
    add("")
    add(
        f"_Draft written by rollbot at {t.both(facts.generated_at)} from {i.ref}'s record. "
        "The facts below come from rollbot; the sections after the root cause are the "
        "team's to write._"
    )
    add("")

    # ---- summary
    add("## Summary")
    add("")
    where = i.environment or "(no environment chosen)"
    end = i.closed_at
    duration = format_duration(_between(i.created_at, end or facts.generated_at))
    if end is None:
        duration += " so far (still open)"
    target = next(
        (
            (s.result or {}).get("database_target")
            for s in reversed(steps)
            if s.status == "succeeded" and isinstance((s.result or {}).get("database_target"), dict)
        ),
        None,
    )
    link = thread_link(i.chat_channel, i.chat_thread)
    summary_rows: list[tuple[str, object]] = [
        ("Incident", i.ref),
        ("Description", i.description or "(none given)"),
        ("Environment", f"{where} (tier: {i.tier or 'none'})"),
        ("Requested by", f"{i.requester} (via {i.source})"),
        ("State", i.state if in_words(i.state) == i.state else f"{i.state} ({in_words(i.state)})"),
        ("Opened", t.both(i.created_at)),
        ("Closed", t.both(end) if end else "still open"),
        ("Duration", duration),
        ("Method", method_title(i.method) if i.method else "(none chosen)"),
        (
            "Database now lives",
            str(target.get("label"))
            if target
            else f"where {where} is configured (no step moved it)",
        ),
        ("Thread", link or "(no Slack thread)"),
    ]
    if meeting is not None:
        summary_rows.append(
            (
                "Post-mortem meeting",
                f"{t.both(meeting.start)} to {t.utc(meeting.end)} "
                f"({format_duration(meeting.end - meeting.start)})",
            )
        )
    if i.follows_id:
        summary_rows.append(("Follows", f"INC-{i.follows_id}"))
    out += _table(("", ""), summary_rows)
    add("")

    # ---- decision path
    add("## Decision path")
    add("")
    path, outcome = decision_path(i.answers or [])
    if not path:
        add("_The decision tree was not answered._")
    for n, step in enumerate(path, start=1):
        add(f"{n}. {_text(step.question)} **{_text(step.answer)}**")
    if outcome:
        add("")
        add(f"The runbook says: **{_text(outcome)}**")
    if path:
        add("")
        add(f"Path: {_text(path_summary(i.answers or []))}")
    add("")

    # ---- method and plan
    add("## Method and plan")
    add("")
    if not i.method:
        add("_No method was chosen._")
    else:
        heading = method_title(i.method)
        method = RUNBOOK.methods.get(i.method)
        if method is not None:
            heading = method.heading
        add(f"**{_text(heading)}** (`{i.method}`)")
        if method is not None:
            add("")
            add(f"When to use it: {_text(method.when_to_use)}")
            if method.data_loss:
                add(f"Data that may be lost: {_text(method.data_loss)}")
        add("")
        for s in steps:
            mark = " (destructive)" if s.destructive else ""
            add(f"{s.seq}. {_text(s.title)}{mark}")
            if s.plan_text:
                add("")
                out += ["   " + line if line else "" for line in _fenced(s.plan_text)]
                add("")
    add("")

    # ---- approvals
    add("## Approvals")
    add("")
    requests = _requested_approval(facts.events)
    if requests:
        for e in requests:
            add(f"- Approval requested by {_text(e.actor)} at {t.both(e.at)}")
    else:
        add(f"- Approval never requested (the incident was opened by {_text(i.requester)})")
    if i.approvals:
        add("")
        rows = [
            (
                a.approver,
                t.both(a.created_at),
                t.both(a.expires_at),
                "yes" if a.plan_hash == i.plan_hash else "no (an earlier plan)",
            )
            for a in i.approvals
        ]
        out += _table(("Approver", "Approved at", "Expires", "For the plan that ran"), rows)
    else:
        add("- No approvals recorded")
    add("")

    # ---- steps
    add("## Steps")
    add("")
    if not steps:
        add("_No steps were planned._")
    else:
        rows = [
            (
                s.seq,
                s.title,
                s.status,
                s.attempt,
                t.utc(s.started_at),
                t.utc(s.finished_at),
                format_duration(_between(s.started_at, s.finished_at)),
                (s.result or {}).get("summary") or s.error or "",
            )
            for s in steps
        ]
        out += _table(
            ("#", "Step", "Status", "Attempt", "Started", "Finished", "Duration", "Result"), rows
        )
        for s in steps:
            details = _step_details(s.result or {}, s.error, s.kind)
            if details:
                add("")
                add(f"Step {s.seq} ({_text(s.title)}):")
                out += details
    add("")

    # ---- verification
    verifies = [s for s in steps if s.kind.endswith(".verify") or s.kind == "verify"]
    add("## Verification")
    add("")
    if not verifies:
        add("_No verify step was part of the plan._")
    for s in verifies:
        result = s.result or {}
        add(
            f"- Step {s.seq} ({_text(s.title)}): {s.status}: {_text(result.get('summary') or s.error or 'not run')}"
        )
        for line in result.get("lines") or ():
            add(f"  - {_text(line)}")
        for problem in result.get("problems") or ():
            add(f"  - problem: {_text(problem)}")
    add("")

    # ---- checklists
    add("## Checklists")
    for title, items in (("Before", RUNBOOK.before_checklist), ("After", RUNBOOK.after_checklist)):
        add("")
        add(f"### {title}")
        add("")
        for item in items:
            tick = facts.ticks.get(item.id)
            if tick is None:
                add(f"- [ ] {_text(item.text)}")
                continue
            mark = "x" if tick.ticked else " "
            verb = "ticked" if tick.ticked else "unticked"
            line = f"- [{mark}] {_text(item.text)} — {verb} by {_text(tick.actor)} at {t.both(tick.at)}"
            if tick.evidence:
                line += f" (evidence: {_text(tick.evidence)})"
            add(line)
    add("")

    # ---- notices
    add("## Pages and notices")
    add("")
    if not facts.notices:
        add("_No pages or notices were sent._")
    else:
        rows = [(n.kind, n.audience, t.utc(n.created_at), _delivery(n, t)) for n in facts.notices]
        out += _table(("Kind", "Audience", "Queued", "Delivery"), rows)
    add("")

    # ---- the team's sections
    add("## Root cause")
    add("")
    add(_text(i.root_cause) if i.root_cause else TO_BE_WRITTEN)
    if i.notes:
        add("")
        add(f"Notes: {_text(i.notes)}")
    add("")
    for heading in ("What went well", "What went wrong"):
        add(f"## {heading}")
        add("")
        add("- ")
        add("")
    add("## Action items (update the runbook?)")
    add("")
    add("- [ ] ")
    add("")

    # ---- timeline
    add("## Timeline")
    add("")
    if not facts.events:
        add("_No audit events._")
    else:
        if t.name == "UTC":
            rows = [(t.utc(e.at), e.actor, e.message) for e in facts.events]
            out += _table(("Time (UTC)", "Actor", "Event"), rows)
        else:
            header = ("Time (UTC)", f"Time ({t.name})", "Actor", "Event")
            rows = [(t.utc(e.at), t.local(e.at), e.actor, e.message) for e in facts.events]
            out += _table(header, rows)
    return redact(re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip("\n") + "\n")


def _step_details(result: Mapping[str, Any], error: str | None, kind: str) -> list[str]:
    lines: list[str] = []
    safety = result.get("safety")
    if isinstance(safety, dict):
        verified = "verified" if safety.get("verified") else "NOT verified"
        lines.append(
            f"- safety snapshot: {_text(safety.get('name'))} in {_text(safety.get('where'))} ({verified})"
        )
    target = result.get("database_target")
    if isinstance(target, dict) and target.get("label"):
        line = f"- the database now lives in: {_text(target.get('label'))}"
        if target.get("url_env"):
            line += f" (connection string in ${_text(target['url_env'])})"
        lines.append(line)
    if not (kind.endswith(".verify") or kind == "verify"):  # a verify's own section has them
        for entry in result.get("lines") or ():
            lines.append(f"- {_text(entry)}")
        for problem in result.get("problems") or ():
            lines.append(f"- problem: {_text(problem)}")
    for leftover in result.get("leftovers") or ():
        lines.append(f"- left after an interruption: {_text(leftover)}")
    if error and error != result.get("summary"):
        lines.append(f"- error: {_text(error)}")
    return lines


def _delivery(notice: OutboxItem, t: _Times) -> str:
    if notice.sent_at is not None:
        return f"sent {t.utc(notice.sent_at)}"
    if notice.given_up_at is not None:
        return f"given up {t.utc(notice.given_up_at)}: {notice.last_error or 'no reason recorded'}"
    if notice.last_error:
        return f"not sent yet ({notice.attempts} attempt(s)): {notice.last_error}"
    return "not sent yet"
