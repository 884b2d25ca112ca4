"""Which backup runs a Cloud SQL backup restore can use: SUCCESSFUL ones, newest first."""

from __future__ import annotations

from datetime import datetime

from bot.errors import RollbotError
from bot.steps import RestoreSource, StepContext
from providers.cloudsql.access import client_for, cloudsql_config
from providers.cloudsql.client import CloudSqlClient
from providers.cloudsql.models import BackupRun

SAFETY_PREFIX = "rollbot safety backup"
SHOWN = 20


def successful_backups(client: CloudSqlClient, instance: str) -> list[BackupRun]:
    return [r for r in client.backup_runs(instance) if r.status == "SUCCESSFUL"]


def describe(run: BackupRun) -> str:
    kind = "on-demand" if run.type == "ON_DEMAND" else run.type.lower()
    text = f"backup run {run.id}: {run.when}, {kind}"
    return text + (f", {run.description}" if run.description else "")


def choose_backup(
    runs: list[BackupRun], instance: str, wanted: str | None, before: datetime | None
) -> BackupRun:
    """The picked run (by id), else the newest before ``before``, else the newest."""
    if wanted:
        for run in runs:
            if run.id == wanted:
                return run
        ids = ", ".join(r.id for r in runs[:5]) or "none"
        raise RollbotError(
            f"no SUCCESSFUL backup run {wanted!r} of Cloud SQL instance {instance}; "
            f"the newest: {ids}"
        )
    usable = [r for r in runs if before is None or (r.started and r.started <= before)]
    if not usable:
        when = f" taken before {before:%Y-%m-%d %H:%M:%S} UTC" if before else ""
        raise RollbotError(f"no SUCCESSFUL backup of Cloud SQL instance {instance}{when}")
    return usable[0]


def backup_sources(
    ctx: StepContext, chosen: str | None, *, in_place_warning: bool = False
) -> list[RestoreSource]:
    cfg = cloudsql_config(ctx.environment)
    runs = successful_backups(client_for(ctx.environment), cfg.instance)
    out = []
    for run in runs[:SHOWN]:
        warning = None
        if run.description.startswith(SAFETY_PREFIX):
            warning = "rollbot's safety backup of the state an earlier restore replaced"
        elif in_place_warning:
            warning = f"restoring a backup OVERWRITES {cfg.instance} in place"
        out.append(RestoreSource(run.id, describe(run), chosen=run.id == chosen, warning=warning))
    return out
