"""Checklist items rollbot did itself, ticked by ``rollbot`` with the evidence.

People should not have to tick "take a snapshot" after rollbot took and verified one,
nor "verify database state" after its verify step passed. An item a person already
ticked (or unticked) stays as they left it; rollbot only ticks what is still open.
What counts as evidence is read from step results by their keys (``safety_snapshot``,
the declared ``safety`` snapshot, ``migration``, ``smoke_queries``), so the core names no
provider.
"""

from __future__ import annotations

from typing import Any

AUTO_ACTOR = "rollbot"


def from_step(kind: str, title: str, result: dict[str, Any]) -> dict[str, str]:
    """Checklist item -> evidence, for a step that succeeded with ``result``."""
    found: dict[str, str] = {}
    declared = result.get("safety") if isinstance(result.get("safety"), dict) else {}
    snapshot = result.get("safety_snapshot") or (declared.get("verified") and declared.get("name"))
    if snapshot:
        found["before.snapshot"] = f"verified snapshot {snapshot}"
    if result.get("migration"):
        found["before.identify_migration"] = f"migration {result['migration']}"
    if kind.endswith(".verify"):
        found["after.verify_database"] = str(result.get("summary") or title)[:300]
        if result.get("smoke_queries"):
            found["after.smoke_tests"] = f"{result['smoke_queries']} smoke quer(ies) passed"
    return found


def from_plan(method_title: str, step_kinds: list[str]) -> dict[str, str]:
    """What choosing a method settles: the method, and whether verification is planned."""
    found = {"before.choose_method": f"method: {method_title}"}
    if any(k.endswith(".verify") for k in step_kinds):
        found["before.plan_verification"] = "a verify step is part of the plan"
    return found
