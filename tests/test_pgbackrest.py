"""pgBackRest PITR through the incident core, against a real archiving cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import RollbotError
from bot.executor import Executor
from bot.service import Rollbot
from handlers.runtime import register_provider_steps
from providers.pgbackrest.throwaway import ArchivingCluster
from providers.postgres.conn import connect
from tests.pgbackrest_support import archiving, needs_pgbackrest, prepare, write_config, write_for

pytestmark = [pytest.mark.postgres, needs_pgbackrest]
__all__ = ["archiving"]


def _bot(cfg: Path) -> Rollbot:
    register_provider_steps()
    return Rollbot.open(load_settings(cfg))


def _incident(bot: Rollbot) -> int:
    incident = bot.open_incident("alice", "bad data after the migration", environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    return incident.id


def _ticks(url: str, target: datetime) -> tuple[int, int, int]:
    with connect(url) as conn:
        before, after = conn.execute(
            "SELECT count(*) FILTER (WHERE written_at <= %s), "
            "count(*) FILTER (WHERE written_at > %s) FROM ticks",
            (target, target),
        ).fetchone()  # type: ignore[misc]
        total = conn.execute(
            "SELECT sum(id) FROM ticks WHERE written_at <= %s", (target,)
        ).fetchone()
    return int(before), int(after), int(total[0] or 0)  # type: ignore[index]


def test_pitr_replays_wal_to_the_target_then_switches_in_place(
    tmp_path: Path, archiving: ArchivingCluster
) -> None:
    url = prepare(archiving)
    target = write_for(url, 2.0)
    expected = _ticks(url, target)
    archiving.archive_now()
    assert expected[0] > 0 and expected[1] > 0  # rows on both sides of the target
    bot = _bot(write_config(tmp_path, archiving))
    ref = _incident(bot)
    bot.choose_method(ref, "pitr", "alice", {"restore_to": target.isoformat()})
    plan = bot.get(ref).steps[0].plan_text
    assert "backup set" in plan and "WAL to replay" in plan and "every write after" in plan
    bot.request_approval(ref, "alice")
    bot.approve(ref, "bob")
    bot.start(ref, "alice")
    done = Executor(bot).run_incident(ref)
    assert done.state == "verifying", [(s.kind, s.error) for s in done.steps]
    # The live URL now serves the restored cluster: every row up to the target, none after.
    before, after, checksum = _ticks(url, target)
    assert (before, after, checksum) == (expected[0], 0, expected[2])
    datadir = archiving.cluster.datadir
    kept = list(datadir.parent.glob(f"{datadir.name}.before_restore_*"))
    assert len(kept) == 1 and (kept[0] / "PG_VERSION").exists()
    switch = done.steps[-1].result
    assert switch["durations"]["switch"] >= 0
    bot.store.dispose()


@pytest.mark.parametrize("when", ["future", "before_backups"])
def test_a_target_outside_the_window_is_refused_in_the_plan(
    tmp_path: Path, archiving: ArchivingCluster, when: str
) -> None:
    url = prepare(archiving)
    write_for(url, 0.2)
    archiving.archive_now()
    target = datetime.now(UTC) + (timedelta(hours=1) if when == "future" else -timedelta(days=1))
    bot = _bot(write_config(tmp_path, archiving))
    ref = _incident(bot)
    with pytest.raises(RollbotError) as refused:
        bot.choose_method(ref, "pitr", "alice", {"restore_to": target.isoformat()})
    text = str(refused.value)
    assert (
        ("in the future" in text) if when == "future" else ("outside the restorable window" in text)
    )
    assert bot.get(ref).steps == []  # nothing planned, nothing run
    siblings = list(archiving.cluster.datadir.parent.iterdir())
    assert not [p for p in siblings if ".restore_" in p.name]
    bot.store.dispose()


def _planned(tmp_path: Path, archiving: ArchivingCluster, **pitr: str | int) -> tuple[Rollbot, int]:
    url = prepare(archiving)
    target = write_for(url, 0.4)
    archiving.archive_now()
    bot = _bot(write_config(tmp_path, archiving, **pitr))
    ref = _incident(bot)
    bot.choose_method(ref, "pitr", "alice", {"restore_to": target.isoformat()})
    bot.request_approval(ref, "alice")
    bot.approve(ref, "bob")
    bot.start(ref, "alice")
    return bot, ref


def test_the_default_restore_point_is_a_second_before_the_migration_started(
    tmp_path: Path, archiving: ArchivingCluster
) -> None:
    url = prepare(archiving)
    write_for(url, 2.5)  # the backup's stop time is recorded to the second
    started = datetime.now(UTC).replace(microsecond=0)
    (tmp_path / "audit.log").write_text(
        f"{started:%Y-%m-%dT%H:%M:%SZ} - Migration started: 0003_hasty_priority\n"
    )
    write_for(url, 0.4)
    archiving.archive_now()
    bot = _bot(write_config(tmp_path, archiving))
    ref = _incident(bot)
    bot.choose_method(ref, "pitr", "alice")
    step = bot.get(ref).steps[0]
    assert step.params["target"] == (started - timedelta(seconds=1)).isoformat()
    assert "one second before migration 0003_hasty_priority started" in step.plan_text
    bot.store.dispose()


@pytest.mark.parametrize("bad", ["stanza", "directory", "port"])
def test_bad_input_is_refused_in_the_plan_with_one_clear_line(
    tmp_path: Path, archiving: ArchivingCluster, bad: str
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    pitr: dict[str, str | int] = {
        "stanza": {},
        "directory": {"restore_directory": str(taken)},
        "port": {"restore_port": archiving.cluster.port},
    }[bad]
    url = prepare(archiving)
    target = write_for(url, 0.4)
    archiving.archive_now()
    cfg = write_config(tmp_path, archiving, **({} if bad == "stanza" else pitr))
    if bad == "stanza":  # the section's own line, replaced
        cfg.write_text(cfg.read_text().replace(f'stanza = "{archiving.stanza}"', 'stanza = "nope"'))
    bot = _bot(cfg)
    ref = _incident(bot)
    with pytest.raises(RollbotError) as refused:
        bot.choose_method(ref, "pitr", "alice", {"restore_to": target.isoformat()})
    text = str(refused.value)
    expected = {"stanza": "no stanza 'nope'", "directory": "already exists", "port": "is in use"}
    assert expected[bad] in text and "\n" not in text
    assert bot.get(ref).steps == []
    bot.store.dispose()


def test_pgbackrest_failing_mid_restore_leaves_nothing_and_the_live_cluster_untouched(
    tmp_path: Path, archiving: ArchivingCluster
) -> None:
    bot, ref = _planned(tmp_path, archiving)
    datadir = Path(bot.get(ref).steps[0].params["data_directory"])
    backup = next((archiving.root / "repo" / "backup" / archiving.stanza).glob("*F"))
    victim = max((backup / "pg_data" / "base").rglob("*"), key=lambda p: p.stat().st_size)
    victim.write_bytes(b"not what the manifest says")
    before = _ticks(archiving.cluster.url("shop"), datetime.now(UTC))
    done = Executor(bot).run_incident(ref)
    step = done.steps[0]
    assert step.status == "failed", step.status
    assert f"the partial restore {datadir} was removed" in (step.error or "")
    assert not datadir.exists()
    assert _ticks(archiving.cluster.url("shop"), datetime.now(UTC)) == before
    bot.store.dispose()


def test_another_host_is_switched_by_the_repoint_command_with_the_url_in_its_environment(
    tmp_path: Path, archiving: ArchivingCluster
) -> None:
    got = tmp_path / "repointed"
    bot, ref = _planned(
        tmp_path, archiving, repoint_command=f'printenv ROLLBOT_NEW_DATABASE_URL > "{got}"'
    )
    done = Executor(bot).run_incident(ref)
    assert done.state == "verifying", [(s.kind, s.error) for s in done.steps]
    port = done.steps[0].result["candidate"]["port"]
    url = got.read_text().strip()
    assert url.endswith(f"@127.0.0.1:{port}/shop")
    assert archiving.cluster.password not in " ".join(s.plan_text for s in done.steps)
    assert list(archiving.cluster.datadir.parent.glob("*.before_restore_*")) == []
    _ticks(archiving.cluster.url("shop"), datetime.now(UTC))  # the old cluster still serves
    from providers.pgbackrest import cluster_ops

    cluster_ops.stop(archiving.pitr(), Path(done.steps[0].result["candidate"]["data_directory"]))
    bot.store.dispose()


def test_pitr_status_shows_the_window_and_warns_when_archiving_fails(
    tmp_path: Path, archiving: ArchivingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from handlers.cli import main

    url = prepare(archiving)
    write_for(url, 0.2)
    archiving.archive_now()
    cfg = write_config(tmp_path, archiving)
    assert main(["--config", str(cfg), "pitr", "status", "--env", "production"]) == 0
    out = capsys.readouterr().out
    assert "backups (1):" in out and "(full)" in out and "restorable window: " in out
    assert main(["--config", str(cfg), "check-config"]) == 0  # check-config asks pgBackRest too
    out = capsys.readouterr().out
    assert "  pitr production: pgBackRest stanza " in out and "restorable window: " in out
    assert "WARNING" not in out

    assert (
        main(["--config", str(cfg), "snapshot", "--env", "production", "--physical", "incr"]) == 0
    )
    captured = capsys.readouterr()
    assert "physical backup written: " in captured.out and "(incr)" in captured.out
    assert "physical backup: 100%" in captured.err

    with connect(archiving.cluster.url(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET archive_command = 'false'")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("CREATE TABLE IF NOT EXISTS filler AS SELECT 1 AS x")
        conn.execute("SELECT pg_switch_wal()")
    from tests.waiting import wait_until

    def failed() -> bool:
        with connect(archiving.cluster.url(), autocommit=True) as conn:
            return conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0] > 0  # type: ignore[index]

    wait_until(failed, "the archiver to fail")
    assert main(["--config", str(cfg), "pitr", "status", "--env", "production", "--no-check"]) == 1
    err = capsys.readouterr().err
    assert "WAL archiving is FAILING" in err
    assert main(["--config", str(cfg), "check-config"]) == 0  # a warning, not a config error
    assert "  WARNING: production: " in capsys.readouterr().out
    # ... and rollbot migrate refuses to start a migration there (no PITR way back).
    from providers.pgbackrest.status import require_healthy_archive

    with pytest.raises(RollbotError) as refused:
        require_healthy_archive(load_settings(cfg).environment("production"))
    assert "WAL archiving is not healthy" in str(refused.value)


def test_a_restore_recorded_as_sent_resumes_without_restoring_again(
    tmp_path: Path, archiving: ArchivingCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker died after pgBackRest finished (``record_sent``): ``resume`` starts the
    restored cluster and waits for its promotion; pgBackRest is not run a second time."""
    from bot.config import EnvironmentConfig, Settings
    from bot.steps import StepContext, build_step
    from providers.pgbackrest import tool
    from providers.pgbackrest.restore_step import pg_target

    url = prepare(archiving)
    target = write_for(url, 0.6)
    expected = _ticks(url, target)
    archiving.archive_now()
    env = EnvironmentConfig(
        name="production", tier="production", database_url_env="ROLLBOT_TEST_PITR_URL",
        pitr=archiving.pitr(),
    )  # fmt: skip
    ctx = StepContext(1, Settings(), env, lambda _t: None, lambda *_a: None)
    step = build_step("pgbackrest.restore", {"restore_to": target.isoformat()})
    pinned = build_step("pgbackrest.restore", step.pin(ctx))  # type: ignore[attr-defined]
    datadir = Path(pinned.data_directory)  # type: ignore[attr-defined]
    archiving.tool().run(
        "restore", "--type=time", f"--target={pg_target(target)}", "--target-action=promote",
        f"--set={pinned.backup_set}", f"--pg1-path={datadir}",  # type: ignore[attr-defined]
    )  # fmt: skip
    ctx.external = {"intent": {"data_directory": str(datadir)}, "sent": True}
    monkeypatch.setattr(tool.PgBackRest, "spawn", lambda *_a: pytest.fail("restored again"))
    result = pinned.resume(ctx)  # type: ignore[attr-defined]
    assert result.ok, result.summary
    port = result.data["candidate"]["port"]
    restored = url.replace(f":{archiving.cluster.port}/", f":{port}/")
    assert _ticks(restored, target) == (expected[0], 0, expected[2])
    from providers.pgbackrest import cluster_ops

    cluster_ops.stop(archiving.pitr(), datadir, "immediate")
