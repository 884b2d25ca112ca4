"""Pre-migration branches: the Neon form of the runbook's pre-deploy snapshot. Before
``rollbot migrate`` runs the migrations, a child branch of the environment's branch keeps
the state they start from; a branch rollback offers it first."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.config import EnvironmentConfig
from providers.neon.access import (
    PRE_MIGRATION_PREFIX,
    client_for,
    environment_branch,
    neon_config,
    stamp,
)
from providers.neon.candidates import is_pre_migration
from providers.neon.client import Branch, NeonClient, NeonError


def branch_name(tag: str, moment: datetime) -> str:
    """``pre-migrate-<tag>-<YYYYMMDD-HHMMSS>``, the tag cut to what a name should carry."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", tag).strip("-")[:60] or "migration"
    return f"{PRE_MIGRATION_PREFIX}{safe}-{stamp(moment)}"


def create_pre_migration_branch(
    env: EnvironmentConfig, tag: str, report: Callable[[str], None] = lambda _l: None
) -> tuple[Branch, list[str]]:
    """The new branch (ready: its operations finished) and the old ones retention deleted."""
    cfg = neon_config(env)
    with client_for(env) as client:
        parent = environment_branch(client, env)
        branch, operations = client.create_branch(parent.id, branch_name(tag, datetime.now(UTC)))
        try:
            client.wait(operations, poll_seconds=cfg.poll_seconds, on_progress=report)
        except NeonError as exc:  # it exists: say which, so nobody has to guess
            raise NeonError(
                f"pre-migration branch {branch.name} ({branch.id}) was created but is not "
                f"ready: {exc}"
            ) from exc
        pruned = prune_pre_migration_branches(
            client, parent, timedelta(days=cfg.pre_migration_keep_days)
        )
    return branch, pruned


def prune_pre_migration_branches(client: NeonClient, parent: Branch, keep: timedelta) -> list[str]:
    """Delete rollbot's pre-migration branches of ``parent`` older than ``keep``; the newest
    always stays (it is what the next rollback would go back to). Protected ones stay."""
    own = sorted(
        (b for b in client.list_branches() if is_pre_migration(b, parent)),
        key=lambda b: b.created_at,
        reverse=True,
    )
    cutoff = datetime.now(UTC) - keep
    deleted = []
    for branch in own[1:]:
        if branch.created_at < cutoff and not branch.protected and not branch.default:
            client.wait(client.delete_branch(branch.id))
            deleted.append(branch.name)
    return deleted
