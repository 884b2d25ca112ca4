"""pgBackRest in-place ``--delta`` PITR (option ``in_place``), against a real archiving cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import RollbotError
from bot.executor import Executor
from bot.service import Rollbot
from bot.steps import StepResult
from providers.pgbackrest.throwaway import ArchivingCluster
from providers.pgbackrest.window import backups_of
from tests.pgbackrest_support import archiving, needs_pgbackrest, prepare, write_config, write_for
from tests.test_pgbackrest import _bot, _incident, _ticks

pytestmark = [pytest.mark.postgres, needs_pgbackrest]
__all__ = ["archiving"]
IN_PLACE = {"in_place": True}


def _approved(tmp_path: Path, arch: ArchivingCluster, target: datetime) -> tuple[Rollbot, int]:
    bot = _bot(write_config(tmp_path, arch))
    ref = _incident(bot)
    bot.choose_method(ref, "pitr", "alice", {**IN_PLACE, "restore_to": target.isoformat()})
    bot.request_approval(ref, "alice")
    bot.approve(ref, "bob")
    bot.start(ref, "alice")
    return bot, ref


def test_in_place_restore_brings_back_the_rows_up_to_the_target_after_a_safety_backup(
    tmp_path: Path, archiving: ArchivingCluster
) -> None:
    url = prepare(archiving)
    target = write_for(url, 2.0)
    expected = _ticks(url, target)
    archiving.archive_now()
    assert expected[0] > 0 and expected[1] > 0  # rows on both sides of the target
    bot, ref = _approved(tmp_path, archiving, target)
    steps = bot.get(ref).steps
    assert [s.kind for s in steps] == [
        "pgbackrest.safety_backup",
        "pgbackrest.delta_restore",
        "postgres.verify",
    ]
    plan = steps[1].plan_text
    for words in ("STOPPED and OVERWRITTEN", "downtime", "every write after", "--delta",
                  "restore the safety backup by its label"):  # fmt: skip
        assert words in plan, words
    datadir = archiving.cluster.datadir
    done = Executor(bot).run_incident(ref)
    assert done.state == "verifying", [(s.kind, s.error) for s in done.steps]
    # The live URL serves the same data directory, restored: rows up to the target, none after.
    assert _ticks(url, target) == (expected[0], 0, expected[2])
    assert not [p for p in datadir.parent.iterdir() if ".restore_" in p.name or "before_" in p.name]
    # The safety backup is in pgBackRest's list, and finished before the restore started.
    safety, restore = done.steps[0], done.steps[1]
    label = safety.result["safety"]["name"]
    assert safety.result["safety"]["verified"] is True
    listed = {b.label: b for b in backups_of(archiving.tool().info())}
    assert label in listed and label != restore.result["backup_set"]
    assert safety.finished_at is not None and restore.started_at is not None
    assert safety.finished_at <= restore.started_at
    assert listed[label].stopped >= target.replace(microsecond=0)
    assert restore.external["phase"] == "restored" and restore.external["intent"]["safety"] == label
    bot.store.dispose()


def test_without_the_safety_declaration_the_in_place_restore_is_refused(
    tmp_path: Path, archiving: ArchivingCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers.pgbackrest import delta

    url = prepare(archiving)
    target = write_for(url, 0.4)
    archiving.archive_now()
    bot, ref = _approved(tmp_path, archiving, target)
    before = _ticks(url, datetime.now(UTC))
    monkeypatch.setattr(  # "succeeds" without declaring a verified copy
        delta.SafetyBackupStep, "run", lambda _self, _ctx: StepResult(True, "no backup taken")
    )
    done = Executor(bot).run_incident(ref)
    step = done.steps[1]
    assert step.status == "failed" and "no verified safety snapshot" in (step.error or "")
    assert _ticks(url, datetime.now(UTC)) == before  # the live cluster still serves, unchanged
    bot.store.dispose()


@pytest.mark.parametrize("when", ["future", "before_backups"])
def test_an_in_place_target_outside_the_window_is_refused_before_any_command(
    tmp_path: Path, archiving: ArchivingCluster, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    from providers.pgbackrest import tool

    url = prepare(archiving)
    write_for(url, 0.2)
    archiving.archive_now()
    bot = _bot(write_config(tmp_path, archiving))
    ref = _incident(bot)
    ran: list[tuple[str, ...]] = []
    real = tool.PgBackRest.spawn
    monkeypatch.setattr(
        tool.PgBackRest,
        "spawn",
        lambda self, command, *o: (ran.append((command, *o)), real(self, command, *o))[1],
    )
    target = datetime.now(UTC) + (timedelta(hours=1) if when == "future" else -timedelta(days=1))
    with pytest.raises(RollbotError) as refused:
        bot.choose_method(ref, "pitr", "alice", {**IN_PLACE, "restore_to": target.isoformat()})
    text = str(refused.value)
    assert ("in the future" if when == "future" else "outside the restorable window") in text
    assert bot.get(ref).steps == []
    assert [c for c in ran if c[0] != "info"] == []  # only pgbackrest info was read
    bot.store.dispose()


def test_no_stanza_is_refused_in_the_in_place_plan(
    tmp_path: Path, archiving: ArchivingCluster
) -> None:
    url = prepare(archiving)
    target = write_for(url, 0.4)
    archiving.archive_now()
    cfg = write_config(tmp_path, archiving)
    cfg.write_text(cfg.read_text().replace(f'stanza = "{archiving.stanza}"', 'stanza = "nope"'))
    bot = _bot(cfg)
    ref = _incident(bot)
    with pytest.raises(RollbotError) as refused:
        bot.choose_method(ref, "pitr", "alice", {**IN_PLACE, "restore_to": target.isoformat()})
    assert "no stanza 'nope'" in str(refused.value) and "\n" not in str(refused.value)
    assert bot.get(ref).steps == []
    bot.store.dispose()


def test_a_worker_dying_mid_restore_is_not_restored_again_and_says_how_to_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded as sent while pgBackRest ran: ``resume`` never restores again, it says the
    cluster may be half-restored and how to finish or undo; so does the clean-up."""
    from bot.config import EnvironmentConfig, PitrConfig, Settings
    from bot.steps import StepContext, build_step
    from providers.pgbackrest import tool

    live = tmp_path / "data"
    pitr = PitrConfig(tool="pgbackrest", stanza="main", data_directory=live)
    env = EnvironmentConfig(name="production", tier="production", database_url_env="X", pitr=pitr)
    ctx = StepContext(1, Settings(), env, lambda _t: None, lambda *_a: None)
    ctx.shared = {"pgbackrest.safety_backup": {"label": "20261203-070000F"}}
    step = build_step("pgbackrest.delta_restore", {"target": "2026-12-03T06:59:00+00:00"})
    monkeypatch.setattr(tool.PgBackRest, "spawn", lambda *_a: pytest.fail("restored again"))
    assert step.after_interruption(ctx, True) == [  # type: ignore[attr-defined]
        "nothing was changed: the live cluster was not stopped"
    ]
    ctx.external = {"intent": {"live": str(live), "options": "-p 5432"}, "phase": "restoring"}
    ctx.external["sent"] = True
    result = step.resume(ctx)  # type: ignore[attr-defined]
    assert not result.ok
    for words in ("may be half-restored", "nothing was restored again", "by hand: ",
                  f"--pg1-path={live} restore", '-o "-p 5432" start', "--set=20261203-070000F"):  # fmt: skip
        assert words in result.summary, words
    (line,) = step.after_interruption(ctx, True)  # type: ignore[attr-defined]
    assert "may be half-restored" in line and "retry this step" in line
    assert "--set=20261203-070000F --type=immediate" in line
