"""Acceptance 2: a real ``rollbot run`` SIGKILLed while pgBackRest restores.

The live cluster keeps serving, unchanged; the step is ``interrupted`` (the restore was not
recorded as sent, so nothing resumes or re-runs by itself); recovery ends the orphaned
pgBackRest and removes the partial data directory, and says so in the step's leftovers.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.service import Rollbot
from handlers.runtime import register_provider_steps
from providers.pgbackrest.cluster_ops import restore_processes
from providers.pgbackrest.throwaway import ArchivingCluster
from providers.postgres.conn import connect
from tests.pgbackrest_support import archiving, needs_pgbackrest, prepare, write_config, write_for
from tests.test_crash_recovery import rollbot
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow, needs_pgbackrest]
__all__ = ["archiving"]


def _state(url: str) -> tuple[int, int, str]:
    with connect(url) as conn:
        ticks = conn.execute("SELECT count(*) FROM ticks").fetchone()[0]  # type: ignore[index]
        pid = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()[0]  # type: ignore[index]
        ident = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]  # type: ignore[index]
    return int(ticks), int(ident), str(pid)


def test_sigkill_during_the_restore_leaves_the_old_cluster_serving(
    tmp_path: Path, archiving: ArchivingCluster
) -> None:
    url = prepare(archiving, extra_rows=400_000)  # big enough to catch pgBackRest at work
    target = write_for(url, 0.6)
    archiving.archive_now()
    before = _state(url)
    cfg = write_config(tmp_path, archiving)
    register_provider_steps()
    bot = Rollbot.open(load_settings(cfg))
    incident = bot.open_incident("alice", "bad data", environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    bot.choose_method(incident.id, "pitr", "alice", {"restore_to": target.isoformat()})
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    datadir = Path(bot.get(incident.id).steps[0].params["data_directory"])

    proc = rollbot(cfg, "run", incident.ref, "--as", "alice", start_new_session=True)
    try:
        wait_until(
            lambda: datadir.exists() and bool(restore_processes(datadir)),
            "pgBackRest to be writing the new data directory",
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    step = bot.get(incident.id).steps[0]
    assert step.status == "running" and not (step.external or {}).get("sent")

    show = rollbot(cfg, "show", incident.ref)
    out, err = show.communicate(timeout=60)
    assert show.returncode == 0, err
    assert "step 1 [interrupted]" in out
    step = bot.get(incident.id).steps[0]
    assert step.status == "interrupted" and step.attempt == 1
    leftovers = " ".join(step.result["leftovers"])
    assert f"removed the partial restore {datadir}" in leftovers, leftovers
    assert not datadir.exists() and restore_processes(datadir) == []
    assert _state(url) == before  # same rows, same server, never restarted
    bot.store.dispose()
