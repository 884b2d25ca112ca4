"""Which branch a branch rollback goes back to: rollbot's own pre-migration branches of the
environment's branch first (newest first), then other branches of it, for a person to pick."""

from __future__ import annotations

from collections.abc import Iterable

from bot.errors import RollbotError
from providers.neon.access import PRE_MIGRATION_PREFIX
from providers.neon.client import Branch


def is_pre_migration(branch: Branch, parent: Branch) -> bool:
    return branch.name.startswith(PRE_MIGRATION_PREFIX) and branch.parent_id == parent.id


def rollback_candidates(branches: Iterable[Branch], current: Branch) -> list[Branch]:
    """Branches ``current`` could be rolled back to, best first. Branches of other lines
    (not children of ``current``) are left out: their data never was this environment's."""
    children = [b for b in branches if b.parent_id == current.id and b.id != current.id]
    newest_first = sorted(children, key=lambda b: b.created_at, reverse=True)
    own = [b for b in newest_first if is_pre_migration(b, current)]
    return own + [b for b in newest_first if b not in own]


def choose(candidates: list[Branch], wanted: str | None, current: Branch) -> Branch:
    """The picked branch (by name or id), else the best candidate; refusals say why."""
    if wanted:
        for branch in candidates:
            if wanted in (branch.id, branch.name):
                return branch
        if wanted in (current.id, current.name):
            raise RollbotError(f"{wanted!r} is the branch the environment runs on now")
        names = ", ".join(b.name for b in candidates[:5]) or "none"
        raise RollbotError(
            f"no branch {wanted!r} among the children of {current.name}; candidates: {names}"
        )
    if not candidates:
        raise RollbotError(
            f"no branch of {current.name} from before the migration (rollbot makes one, "
            "pre-migrate-..., when it runs the migrations); use point-in-time restore instead"
        )
    return candidates[0]
