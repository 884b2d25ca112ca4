"""The ``--json`` shapes of ``rollbot incidents``, ``show`` and ``audit`` (docs/cli-json.md).

Built from the same rows the text output reads; every key is always present so a
script can index without checking, and :func:`handlers.jsonout.emit` redacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.models import AuditEvent, ChecklistTick, Incident, Step
from bot.runbook import RUNBOOK
from bot.service import Rollbot
from handlers.jsonout import iso


def incident_json(i: Incident) -> dict[str, Any]:
    """What ``rollbot incidents`` shows of one incident, plus its times."""
    return {
        "ref": i.ref,
        "id": i.id,
        "state": i.state,
        "environment": i.environment,
        "tier": i.tier,
        "method": i.method,
        "description": i.description or "",
        "requester": i.requester,
        "source": i.source,
        "follows": f"INC-{i.follows_id}" if i.follows_id else None,
        "created_at": iso(i.created_at),
        "updated_at": iso(i.updated_at),
        "closed_at": iso(i.closed_at),
    }


def step_json(s: Step) -> dict[str, Any]:
    result = s.result or {}
    return {
        "seq": s.seq,
        "kind": s.kind,
        "title": s.title,
        "status": s.status,
        "destructive": bool(s.destructive),
        "plan": s.plan_text or "",
        "attempt": s.attempt,
        "queued_at": iso(s.queued_at),
        "started_at": iso(s.started_at),
        "finished_at": iso(s.finished_at),
        "summary": result.get("summary"),
        "error": s.error,
        "lines": [str(line) for line in result.get("lines") or ()],
    }


def approvals_json(bot: Rollbot, i: Incident) -> dict[str, Any]:
    """Counts as ``show`` prints them (null before there is a plan to approve), and each one."""
    if not (i.tier and i.plan_hash):
        return {"valid": None, "needed": None, "by": []}
    policy = bot.policy(i.tier)  # type: ignore[arg-type]
    valid = {a.id for a in policy.valid(i.approvals, i.plan_hash, bot.clock())}
    return {
        "valid": len(valid),
        "needed": policy.min_approvals,
        "by": [
            {
                "approver": a.approver,
                "at": iso(a.created_at),
                "expires_at": iso(a.expires_at),
                "valid": a.id in valid,
            }
            for a in i.approvals
        ],
    }


def checklists_json(ticks: dict[str, ChecklistTick]) -> dict[str, list[dict[str, Any]]]:
    def item(item_id: str, text: str) -> dict[str, Any]:
        t = ticks.get(item_id)
        return {
            "id": item_id,
            "text": text,
            "ticked": bool(t and t.ticked),
            "by": t.actor if t else None,
            "at": iso(t.at) if t else None,
        }

    return {
        "before": [item(x.id, x.text) for x in RUNBOOK.before_checklist],
        "after": [item(x.id, x.text) for x in RUNBOOK.after_checklist],
    }


def show_json(bot: Rollbot, i: Incident) -> dict[str, Any]:
    """Everything ``rollbot show`` prints, as one object."""
    return {
        **incident_json(i),
        "path": [str(a) for a in i.answers or ()],
        "plan_hash": i.plan_hash,
        "root_cause": i.root_cause,
        "approvals": approvals_json(bot, i),
        "steps": [step_json(s) for s in i.steps],
        "checklists": checklists_json(bot.ticks(i.id)),
    }


def audit_json(i: Incident, events: Sequence[AuditEvent]) -> dict[str, Any]:
    return {
        "incident": incident_json(i),
        "events": [
            {
                "id": e.id,
                "at": iso(e.at),
                "actor": e.actor,
                "kind": e.kind,
                "message": e.message,
                "data": e.data or {},
            }
            for e in events
        ],
    }
