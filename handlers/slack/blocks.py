"""Block Kit builders: pure functions from core data to Slack messages.

Kept apart from the listeners so the card can be rendered (and tested) without
Slack; every interactive element's value is an ``ActionValue``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.auto_ticks import AUTO_ACTOR
from bot.lifecycle import State
from bot.methods import method_title
from bot.models import ChecklistTick, Incident, Step
from bot.redact import redact
from bot.runbook import RUNBOOK, Choice, DecisionNode
from bot.steps import Plan, RestoreSource
from handlers.slack.metadata import ActionValue, ValueSigner, checklist_block_id, source_block_id

Block = dict[str, Any]
SECTION_LIMIT = 2900
STATE_EMOJI = {
    State.OPENED.value: ":large_yellow_circle:",
    State.TRIAGED.value: ":large_yellow_circle:",
    State.METHOD_CHOSEN.value: ":large_orange_circle:",
    State.AWAITING_APPROVAL.value: ":hourglass_flowing_sand:",
    State.RUNNING.value: ":arrows_counterclockwise:",
    State.VERIFYING.value: ":mag:",
    State.RESOLVED.value: ":white_check_mark:",
    State.CANCELLED.value: ":no_entry_sign:",
    State.FAILED.value: ":x:",
}
STEP_EMOJI = {
    "pending": ":white_circle:",
    "queued": ":large_blue_circle:",
    "running": ":arrows_counterclockwise:",
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "interrupted": ":warning:",
    "waiting": ":raised_hand:",
    "skipped": ":fast_forward:",
    "cancelled": ":no_entry_sign:",
}


def _clip(text: str, limit: int = SECTION_LIMIT) -> str:
    """At most ``limit`` characters; a code block cut open is closed again."""
    text = redact(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 30]
    if cut.count("```") % 2:
        cut += "\n```"
    return cut + "\n… (truncated)"


PLAN_ROOM = 2700  # what a plan may take in its section before it moves to a file
TIMELINE_HEAD, TIMELINE_TAIL = 5, 25  # events kept in the thread message when it is long


def plan_text(incident: Incident) -> str:
    return "\n".join(f"{s.seq}. {s.plan_text}" for s in sorted(incident.steps, key=lambda s: s.seq))


def plan_too_long(incident: Incident) -> bool:
    return len(redact(plan_text(incident))) > PLAN_ROOM


def plan_section(incident: Incident) -> Block:
    """The whole plan when it fits; else each step's first line and a pointer to the file."""
    head = f"*Plan: {method_title(incident.method or '')}*\n"
    if not plan_too_long(incident):
        return section(f"{head}```{plan_text(incident)}```")
    steps = sorted(incident.steps, key=lambda s: s.seq)
    summary = "\n".join(f"{s.seq}. {(s.plan_text.splitlines() or [''])[0]}" for s in steps)
    return section(
        f"{head}```{summary[:PLAN_ROOM]}```\nThe full plan, with every statement, is in "
        f"`{incident.ref}-plan.txt` in this thread."
    )


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text, 1900)}]}


def button(
    text: str,
    action: str,
    suffix: str,
    value: ActionValue,
    signer: ValueSigner | None,
    style: str | None = None,
) -> Block:
    action_id = f"rb_{action}:{suffix}"[:255]
    b: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": text[:75], "emoji": True},
        "action_id": action_id,
        "value": value.encode(signer, action_id),
    }
    if style:
        b["style"] = style
    return b


def actions(block_id: str, elements: list[Block]) -> Block:
    return {"type": "actions", "block_id": block_id, "elements": elements[:25]}


def thread_link(channel: str | None, ts: str | None) -> str:
    if not channel or not ts:
        return "(no thread yet)"
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def path_text(incident: Incident) -> str:
    """The decision path taken so far, in the runbook's words."""
    labels: list[str] = []
    node: DecisionNode | Choice = RUNBOOK.node(RUNBOOK.root)
    for answer in incident.answers:
        if not isinstance(node, DecisionNode):
            break
        choice = node.choice(answer)
        labels.append(choice.label)
        node = RUNBOOK.node(choice.next_node) if choice.next_node else choice
    if isinstance(node, Choice) and node.summary:
        labels.append(node.summary)
    return " → ".join(labels) if labels else "(not started)"


def headline(incident: Incident) -> str:
    where = f" · {incident.environment} ({incident.tier})" if incident.environment else ""
    emoji = STATE_EMOJI.get(incident.state, "")
    return f"{emoji} *{incident.ref}*{where} · {incident.state.replace('_', ' ')}"


def parent_message(incident: Incident) -> tuple[str, list[Block]]:
    """The incident's top message in the incidents channel (the thread's parent)."""
    text = f"{incident.ref}: database rollback requested by <@{incident.requester}>"
    blocks = [
        section(
            f"{headline(incident)}\n*Requested by* <@{incident.requester}>\n"
            f"*Description:* {incident.description or '_none given_'}"
        ),
        context(
            f"Path: {path_text(incident)}"
            + (f" · method: {incident.method}" if incident.method else "")
        ),
    ]
    return text, blocks


@dataclass
class MethodOption:
    """One runbook method offered at a leaf: its plan preview, or why it cannot run here."""

    method_id: str
    title: str
    when_to_use: str
    recommended: bool
    plans: Sequence[Plan] = ()
    unavailable: str = ""
    data_loss: str = ""
    scenario: str = ""  # a common scenario's action, outside the tree's leaf


@dataclass
class CardView:
    incident: Incident
    nonce: str
    question: DecisionNode | None = None
    options: Sequence[MethodOption] = ()
    approvals_valid: int = 0
    approvals_needed: int = 0
    approvers: Sequence[str] = ()
    expired: Sequence[tuple[str, datetime]] = ()  # approvals of this plan that ran out
    ticks: dict[str, ChecklistTick] = field(default_factory=dict)
    signer: ValueSigner | None = None  # None only in tests that render without a worker
    sources: Sequence[RestoreSource] = ()  # what the plan's restore could restore from
    timezone: str = "UTC"
    undoable: str | None = None  # the database a finished restore kept (Undo swaps it back)
    environments: Sequence[str] = ()  # the tier has several: which one is it about?
    paging: dict[str, str] = field(default_factory=dict)  # audience -> triggered/acknowledged


def _value(view: CardView, arg: str = "", **kw: Any) -> ActionValue:
    return ActionValue(view.incident.id, arg=arg, nonce=view.nonce, **kw)


def _environment_blocks(view: CardView) -> list[Block]:
    buttons = [
        button(name, "environment", name, _value(view, name), view.signer)
        for name in view.environments[:25]
    ]
    return [
        section(f"*Which {view.incident.tier} environment is it?*"),
        actions("rb_environment_question", buttons),
    ]


def _question_blocks(view: CardView, node: DecisionNode) -> list[Block]:
    buttons = [
        button(c.label, "answer", c.id, _value(view, c.id), view.signer) for c in node.choices
    ]
    return [section(f"*{node.question}*"), actions(f"rb_question:{node.id}", buttons)]


def _options_blocks(view: CardView) -> list[Block]:
    out: list[Block] = []
    for opt in view.options:
        tag = ":star: *Recommended:* " if opt.recommended else "*Alternative:* "
        if opt.scenario:
            tag = f":rotating_light: *{opt.scenario}:* "
        head = f"{tag}*{opt.title}*\n_{opt.when_to_use}_"
        if opt.unavailable:
            out.append(section(f"{head}\n:no_entry: not available here: {opt.unavailable}"))
            continue
        plan = "\n".join(p.text() for p in opt.plans)
        loss = f"\n:warning: *Data that may be lost:* {opt.data_loss}" if opt.data_loss else ""
        out.append(section(f"{head}{loss}\n```{plan}```"))
        out.append(
            actions(
                f"rb_method:{opt.method_id}",
                [
                    button(
                        f"Choose {opt.title}",
                        "choose",
                        opt.method_id,
                        _value(view, opt.method_id),
                        view.signer,
                        "primary" if opt.recommended else None,
                    )
                ],
            )
        )
    return out


MAX_OPTIONS = 100  # Block Kit: a static_select holds at most 100 options
OPTION_TEXT = 75  # ... each with at most 75 characters of text


def _source_option(source: RestoreSource) -> Block:
    text = f"{source.label}{' ⚠ safety' if source.warning else ''}"
    return {"text": {"type": "plain_text", "text": _clip(text, OPTION_TEXT)}, "value": source.name}


def _source_blocks(view: CardView) -> list[Block]:
    """Pick another snapshot or a restore time; either draws the plan up again."""
    chosen = next((s for s in view.sources if s.chosen), None)
    options = [_source_option(s) for s in view.sources[:MAX_OPTIONS]]
    select: Block = {
        "type": "static_select",
        "action_id": "rb_source:snapshot",
        "placeholder": {"type": "plain_text", "text": "Restore another snapshot"},
        "options": options,
    }
    if chosen is not None:
        select["initial_option"] = _source_option(chosen)
    picker: Block = {"type": "datetimepicker", "action_id": "rb_source:time"}
    note = f"*Restores:* {chosen.name} ({chosen.label})" if chosen else "*Restores:* (none chosen)"
    if chosen is not None and chosen.warning:
        note += f"\n:warning: *{chosen.warning}*"
    hint = (
        "Pick another snapshot, or a restore time (your Slack time zone; the plan says what "
        "restoring to it means on this platform). The plan is drawn up again and approvals "
        "start over."
    )
    return [
        section(f"{note}\n_{hint}_"),
        actions(source_block_id(view.incident.id, view.signer), [select, picker]),
    ]


def _steps_text(incident: Incident) -> str:
    lines = []
    for s in sorted(incident.steps, key=lambda s: s.seq):
        mark = STEP_EMOJI.get(s.status, "")
        tail = ""
        if s.result and s.result.get("summary"):
            tail = f" — {s.result['summary']}"
        elif s.error:
            tail = f" — {s.error}"
        danger = " :warning: destructive" if s.destructive else ""
        lines.append(f"{mark} {s.seq}. {s.title}{danger}{tail}")
    return "\n".join(lines)


def _checklist_block(view: CardView, which: str) -> list[Block]:
    items = RUNBOOK.before_checklist if which == "before" else RUNBOOK.after_checklist
    title = "Before rollback" if which == "before" else "After rollback"
    options = []
    selected = []
    for item in items:
        tick = view.ticks.get(item.id)
        desc = ""
        if tick and tick.ticked:
            who = "rollbot" if tick.actor == AUTO_ACTOR else f"<@{tick.actor}>"
            desc = f"{who} {tick.at:%H:%M}Z" + (f": {tick.evidence}" if tick.evidence else "")
        opt: Block = {
            "text": {"type": "mrkdwn", "text": item.text},
            "value": item.id,
        }
        if desc:
            opt["description"] = {"type": "mrkdwn", "text": _clip(desc, OPTION_TEXT)}
        options.append(opt)
        if tick and tick.ticked:
            selected.append(opt)
    element: Block = {
        "type": "checkboxes",
        "action_id": f"rb_tick:{which}",
        "options": options,
    }
    if selected:
        element["initial_options"] = selected
    return [
        section(f"*{title} checklist*"),
        actions(checklist_block_id(which, view.incident.id, view.signer), [element]),
    ]


PAGED_NAMES = {"oncall": "on-call", "cto": "CTO escalation"}


def incident_card(view: CardView) -> tuple[str, list[Block]]:
    """The one message in the thread that every click updates in place."""
    inc = view.incident
    state = inc.state
    blocks: list[Block] = [
        section(headline(inc)),
        context(f"Path: {path_text(inc)}"),
    ]
    closed = state in (State.RESOLVED.value, State.CANCELLED.value)
    if view.environments and not closed:
        blocks += _environment_blocks(view)
    elif view.question is not None and state == State.OPENED.value:
        blocks += _question_blocks(view, view.question)
    elif state == State.TRIAGED.value or (state == State.FAILED.value and view.options):
        if state == State.FAILED.value:
            blocks.append(section(f"*Steps*\n{_steps_text(inc)}"))
            blocks.append(section("The plan failed. Choose another method, cancel, or resolve."))
        blocks += _options_blocks(view)
    if inc.method and state in (
        State.METHOD_CHOSEN.value,
        State.AWAITING_APPROVAL.value,
        State.RUNNING.value,
        State.VERIFYING.value,
        State.RESOLVED.value,
    ):
        blocks.append(plan_section(inc))
        blocks.append(section(f"*Steps*\n{_steps_text(inc)}"))
    if view.sources and state in (State.METHOD_CHOSEN.value, State.AWAITING_APPROVAL.value):
        blocks += _source_blocks(view)
    if state == State.METHOD_CHOSEN.value:
        if view.approvals_needed:
            blocks.append(
                actions(
                    "rb_approval_request",
                    [
                        button(
                            "Request approval",
                            "request_approval",
                            "go",
                            _value(view),
                            view.signer,
                            "primary",
                        )
                    ],
                )
            )
        else:
            blocks.append(
                actions(
                    "rb_run",
                    [button("Run the plan", "run", "go", _value(view), view.signer, "primary")],
                )
            )
    if state == State.AWAITING_APPROVAL.value:
        who = ", ".join(f"<@{a}>" for a in view.approvers) or "nobody yet"
        ran_out = "".join(
            f"\n:hourglass: <@{a}>'s approval expired at {at:%H:%M} UTC; approve again"
            for a, at in view.expired
        )
        blocks.append(
            section(
                f"*Approvals:* {view.approvals_valid}/{view.approvals_needed} "
                f"(approved by {who}){ran_out}"
            )
        )
        elements = [button("Approve", "approve", "go", _value(view), view.signer, "primary")]
        if view.approvals_valid >= view.approvals_needed:
            elements.append(
                button("Run the plan", "run", "go", _value(view), view.signer, "danger")
            )
        blocks.append(actions("rb_approval", elements))
    for step in inc.steps:
        if step.status == "interrupted":
            later = [s.seq for s in inc.steps if s.seq > step.seq]
            choices = "\n".join(decision_choices(step, later[0] if later else None))
            blocks.append(
                section(f":warning: Step {step.seq} ({step.title}) was interrupted.\n{choices}")
            )
            blocks.append(_decision_buttons(view.nonce, inc, step, view.signer))
        elif step.status == "waiting":
            todo = (step.result or {}).get("instructions") or step.title
            blocks.append(
                section(
                    f":raised_hand: Step {step.seq} ({step.title}) is for a person: {todo}\n"
                    "*Done* when it is done (rollbot records who); *Abandon* fails the incident."
                )
            )
            blocks.append(
                _decision_buttons(view.nonce, inc, step, view.signer, ("done", "abandon"))
            )
    if not closed:
        blocks += _checklist_block(view, "before")
        if state in (State.RUNNING.value, State.VERIFYING.value, State.FAILED.value):
            blocks += _checklist_block(view, "after")
    if view.undoable and state in (State.VERIFYING.value, State.RESOLVED.value):
        blocks.append(
            section(
                f"The state before the restore is kept as `{view.undoable}`. *Undo restore* "
                "opens an incident that swaps it back (its own plan and approvals)."
            )
        )
        blocks.append(
            actions(
                "rb_undo",
                [button("Undo restore", "undo", "go", _value(view), view.signer)],
            )
        )
    if inc.root_cause:
        blocks.append(section(f"*Root cause:* {inc.root_cause}\n{inc.notes or ''}"))
    if view.paging and not closed:
        paged = ", ".join(f"{PAGED_NAMES.get(a, a)}: {s}" for a, s in view.paging.items())
        blocks.append(context(f":pager: PagerDuty — {paged}"))
    if not closed:
        elements = [button("Root cause & notes", "root_cause", "open", _value(view), view.signer)]
        if "triggered" in view.paging.values():
            elements.append(button("Acknowledge page", "ack", "go", _value(view), view.signer))
        if state in (State.VERIFYING.value, State.FAILED.value):
            elements.append(
                button("Resolve", "resolve", "go", _value(view), view.signer, "primary")
            )
        if state not in (State.RUNNING.value, State.VERIFYING.value):
            elements.append(
                button("Cancel incident", "cancel", "go", _value(view), view.signer, "danger")
            )
        blocks.append(actions("rb_controls", elements))
    return f"{inc.ref} · {inc.state}", blocks[:50]


def decision_choices(step: Step, seq_after: int | None) -> list[str]:
    """What each decision about an interrupted step would do, in words."""
    retry = "run it again from the start" + (
        "; it is destructive, so it needs a fresh approval first (the earlier one does not "
        "carry over)"
        if step.destructive
        else ""
    )
    skip = "treat it as done without running it again; " + (
        f"the plan continues with step {seq_after}" if seq_after else "the plan is finished"
    )
    return [
        f"*Retry*: {retry}.",
        f"*Skip*: {skip}.",
        "*Abandon*: stop here; the incident fails and you choose another method or resolve.",
    ]


def _decision_buttons(
    view_nonce: str,
    incident: Incident,
    step: Step,
    signer: ValueSigner | None,
    decisions: tuple[str, ...] = ("retry", "skip", "abandon"),
) -> Block:
    return actions(
        f"rb_{step.status}:{step.id}",
        [
            button(
                d.capitalize(),
                "step",
                d,
                ActionValue(incident.id, arg=d, nonce=view_nonce, step_id=step.id),
                signer,
                "danger"
                if d == "retry" and step.destructive
                else "primary"
                if d == "done"
                else None,
            )
            for d in decisions
        ],
    )


def interruption_notice(
    incident: Incident, step: Step, leftovers: Sequence[str], nonce: str, signer: ValueSigner
) -> tuple[str, list[Block]]:
    """The thread message after a crash: what was interrupted, what it left, the choices."""
    later = [s.seq for s in incident.steps if s.seq > step.seq]
    text = f":warning: {incident.ref}: step {step.seq} ({step.title}) was interrupted"
    body = (
        f"{text}: the rollbot process running it stopped (a crash or a restart). "
        "Nothing was run again on its own.\n"
        + "\n".join(f"• {line}" for line in leftovers)
        + "\n\n"
        + "\n".join(decision_choices(step, later[0] if later else None))
    )
    return text, [section(body), _decision_buttons(nonce, incident, step, signer)]


def resolve_confirmation(
    incident: Incident, missing: Sequence[str], token: str, signer: ValueSigner
) -> list[Block]:
    """An ephemeral offer to resolve anyway; ``token`` was issued to the person it is for."""
    items = "\n".join(f"• {m}" for m in missing)
    value = ActionValue(incident.id, nonce=token, confirm=True)
    return [
        section(
            f"{incident.ref} still has {len(missing)} unticked checklist item(s):\n{items}\n"
            "Resolve anyway?"
        ),
        actions(
            "rb_resolve_confirm",
            [button("Resolve anyway", "resolve", "confirm", value, signer, "danger")],
        ),
    ]


def root_cause_modal(incident_id: int, token: str) -> dict[str, Any]:
    """``token`` was issued to the person it opens for (checked when it is submitted)."""
    return {
        "type": "modal",
        "callback_id": "rb_root_cause",
        "private_metadata": ActionValue(incident_id, nonce=token).encode(),
        "title": {"type": "plain_text", "text": "Root cause"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "root_cause",
                "label": {"type": "plain_text", "text": "Root cause"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                },
            },
            {
                "type": "input",
                "block_id": "notes",
                "optional": True,
                "label": {"type": "plain_text", "text": "Notes for the post-mortem"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                },
            },
        ],
    }


def status_text(incidents: Sequence[Incident]) -> str:
    if not incidents:
        return "No open incidents."
    lines = [
        f"• {headline(i)} — {i.description or 'no description'} — "
        f"<{thread_link(i.chat_channel, i.chat_thread)}|thread>"
        for i in incidents
    ]
    return "*Open incidents*\n" + "\n".join(lines)


def timeline_fits(incident: Incident, lines: Sequence[str]) -> bool:
    text = f"*Timeline of {incident.ref}* ({incident.state})\n```" + "\n".join(lines) + "```"
    return len(redact(text)) <= SECTION_LIMIT


def timeline_text(incident: Incident, lines: Sequence[str]) -> str:
    """The timeline; when long, its first and last events and where the rest is."""
    title = f"*Timeline of {incident.ref}* ({incident.state})"
    if timeline_fits(incident, lines):
        return _clip(f"{title}\n```" + "\n".join(lines) + "```")
    room = (SECTION_LIMIT - 200) // (TIMELINE_HEAD + TIMELINE_TAIL + 1)
    if len(lines) <= TIMELINE_HEAD + TIMELINE_TAIL:
        shown = [ln[:room] for ln in lines]
    else:
        middle = len(lines) - TIMELINE_HEAD - TIMELINE_TAIL
        shown = [
            *(ln[:room] for ln in lines[:TIMELINE_HEAD]),
            f"… {middle} more events …",
            *(ln[:room] for ln in lines[-TIMELINE_TAIL:]),
        ]
    return _clip(
        f"{title}\n```" + "\n".join(shown) + f"```\nEvery event: `{incident.ref}-timeline.md`."
    )
