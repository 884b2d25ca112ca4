"""RDS and Aurora point-in-time restore through the incident core, against moto's server (which
the tests start). What moto does not enforce (exclusive restore parameters, the restore
window) is rollbot's own check, tested here. The restored instance's endpoint is a moto
hostname: the verify reaches "it" through ``connect_host``/``connect_port``, pointed at a
database on the test cluster that plays the restored instance (at the pre-migration head).
"""

from __future__ import annotations

import getpass
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.errors import RollbotError
from bot.executor import Executor
from bot.service import Rollbot
from bot.steps import StepContext, build_step
from handlers.runtime import load_config
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.rds.client import RdsClient, RdsError
from tests.config_text import TEAM_HEAD
from tests.neon_fixtures import BEFORE_HEAD, EXAMPLE
from tests.rds_support import SECRET_KEY, MotoRds, moto_rds, moto_server  # noqa: F401
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[1]
SOURCE = "orders-prod"

CONFIG = (
    TEAM_HEAD
    + """
[environments.production]
tier = "production"
provider = "rds"
database_url_env = "RDS_TEST_PROD_URL"
migrations_dir = "{migrations}"

[environments.production.rds]
{target}
endpoint_url = "{endpoint}"
poll_seconds = 0.05
max_wait_minutes = 5
connect_host = "127.0.0.1"
connect_port = {pg_port}
{extra}
"""
)


@dataclass
class RdsSetup:
    moto: MotoRds
    config: Path
    settings: Settings
    restored_url: str  # the local database that plays the restored instance
    created_at: datetime  # the source's creation: the start of its restore window

    def bot(self) -> Rollbot:
        return Rollbot.open(self.settings)


def write_config(folder: Path, moto: MotoRds, url: str, target: str, extra: str = "") -> Path:
    from urllib.parse import urlsplit

    migrations = folder / "migrations"
    if not migrations.exists():
        shutil.copytree(EXAMPLE, migrations)
    path = folder / "rollbot.toml"
    path.write_text(
        textwrap.dedent(
            CONFIG.format(
                state=folder / "state.db",
                os_user=getpass.getuser(),
                migrations=migrations,
                target=target,
                endpoint=moto.url,
                pg_port=urlsplit(url).port,
                extra=extra,
            )
        )
    )
    return path


@pytest.fixture
def rds_setup(
    moto_rds: MotoRds,  # noqa: F811
    new_database: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> RdsSetup:
    url = new_database(f"rds_restored_{tmp_path.name[-12:].replace('-', '_')}")
    created = moto_rds.make_instance(SOURCE)
    config = write_config(tmp_path, moto_rds, url, f'instance_id = "{SOURCE}"')
    apply_migrations(url, read_journal(tmp_path / "migrations"), upto=2)
    monkeypatch.setenv("RDS_TEST_PROD_URL", url)
    return RdsSetup(moto_rds, config, load_config(config), url, created)


@pytest.fixture
def bot(rds_setup: RdsSetup) -> Iterator[Rollbot]:
    rollbot = rds_setup.bot()
    yield rollbot
    rollbot.store.dispose()


def opened(bot: Rollbot) -> int:
    incident = bot.open_incident("alice", "orders rows corrupted", environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    return incident.id


def approved(bot: Rollbot, options: dict[str, Any]) -> int:
    incident_id = opened(bot)
    bot.choose_method(incident_id, "pitr", "alice", options)
    bot.request_approval(incident_id, "alice")
    bot.approve(incident_id, "bob")
    bot.start(incident_id, "alice")
    return incident_id


def steps(bot: Rollbot, incident_id: int) -> list:
    return sorted(bot.get(incident_id).steps, key=lambda s: s.seq)


def inside_window(setup: RdsSetup) -> str:
    """A restore time inside the source's window (after it was created, not in the future)."""
    moment = setup.created_at + timedelta(milliseconds=1)
    wait_until(lambda: datetime.now(UTC) > moment, "the restore time to be in the past")
    return moment.isoformat()


def restored(moto: MotoRds) -> list[str]:
    return [i for i in moto.instance_ids() if "-restored-" in i]


def person_done(bot: Rollbot, incident_id: int) -> None:
    """The repoint step without a command or webhook waits for a person: mark it done."""
    waiting = [s for s in steps(bot, incident_id) if s.kind == "deploy.repoint"]
    assert waiting, "no repoint step"
    assert waiting[0].status == "waiting", waiting[0].error
    bot.decide_step(incident_id, waiting[0].id, "alice", "done")


# ---------------------------------------------------------------- restore


def test_restore_into_a_new_instance_copies_the_settings_and_verifies_it(
    rds_setup: RdsSetup, bot: Rollbot
) -> None:
    moto = rds_setup.moto
    source_before = moto.instance(SOURCE)
    incident_id = approved(bot, {"restore_to": inside_window(rds_setup)})
    restore = steps(bot, incident_id)[0]
    plan = restore.plan_text
    new_id = restore.params["new_id"]
    assert new_id.startswith(f"{SOURCE}-restored-") and len(new_id) == len(SOURCE) + 25
    for line in (
        f"instance class: db.r6g.large (copied from {SOURCE})",
        f"subnet group: orders-private (copied from {SOURCE})",
        f"parameter group: orders-pg16 (copied from {SOURCE})",
        f"Multi-AZ: yes (copied from {SOURCE})",
        f"tags: team=orders (copied from {SOURCE})",
        "restore window:",
        "roughly 14-50 min for 200 GiB",
        f"writes to {SOURCE} after",
        f"{SOURCE} keeps them, untouched",
    ):
        assert line in plan, (line, plan)
    assert "VPC security groups: sg-" in plan

    done = Executor(bot).run_incident(incident_id)
    kinds = [s.kind for s in steps(bot, incident_id)]
    assert kinds == ["rds.pitr", "deploy.repoint", "rds.verify"]
    restore = steps(bot, incident_id)[0]
    assert restore.status == "succeeded", [s.error for s in done.steps]
    assert restored(moto) == [new_id]
    new = moto.instance(new_id)
    assert new["DBInstanceClass"] == "db.r6g.large" and new["MultiAZ"] is True
    assert [g["DBParameterGroupName"] for g in new["DBParameterGroups"]] == ["orders-pg16"]
    assert {t["Key"]: t["Value"] for t in new["TagList"]} == {
        "team": "orders",
        "rollbot:incident": f"INC-{incident_id}",
        "rollbot:restored-from": SOURCE,
    }
    endpoint = f"{new['Endpoint']['Address']}:{new['Endpoint']['Port']}"
    assert endpoint in restore.result["summary"]  # the new endpoint, posted
    target = restore.result["database_target"]
    assert target["label"] == f"RDS instance {new_id} ({endpoint})"
    assert target["ref"]["instance_id"] == new_id
    assert restore.result["safety"]["name"] == SOURCE
    assert moto.actions("RestoreDBInstanceToPointInTime") == ["RestoreDBInstanceToPointInTime"]
    assert moto.mutations() == ["RestoreDBInstanceToPointInTime"]  # the source: never modified
    source_after = moto.instance(SOURCE)
    source_after.pop("LatestRestorableTime")  # moves on by itself; nothing else may change
    source_before.pop("LatestRestorableTime")
    assert source_after == source_before

    person_done(bot, incident_id)
    done = Executor(bot).run_incident(incident_id)
    assert done.state == "verifying", [s.error for s in done.steps]
    verify = steps(bot, incident_id)[-1]
    assert verify.result["instance_id"] == new_id and verify.result["head"] == BEFORE_HEAD
    assert verify.result["checked"].startswith(f"RDS instance {new_id}")
    assert SECRET_KEY not in (rds_setup.config.parent / "audit.log").read_text()


def test_the_latest_restorable_time_only_when_a_person_chose_it(
    rds_setup: RdsSetup, bot: Rollbot
) -> None:
    incident_id = opened(bot)
    bot.choose_method(incident_id, "pitr", "alice")
    plan = steps(bot, incident_id)[0].plan_text
    assert "NO RESTORE POINT CHOSEN" in plan and "not chosen yet" in plan
    assert [s.name for s in bot.restore_sources(incident_id)] == ["latest"]
    bot.request_approval(incident_id, "alice")
    bot.approve(incident_id, "bob")
    bot.start(incident_id, "alice")
    failed = Executor(bot).run_incident(incident_id)
    assert failed.state == "failed"
    assert "no restore point was chosen" in (steps(bot, incident_id)[0].error or "")
    assert rds_setup.moto.mutations() == []

    bot.replan(incident_id, "alice", snapshot="latest")
    restore = steps(bot, incident_id)[0]
    assert restore.params["snapshot"] == "latest" and restore.params["before"] is None
    assert "the latest restorable time (now " in restore.plan_text
    bot.request_approval(incident_id, "alice")
    bot.approve(incident_id, "bob")
    bot.start(incident_id, "alice")
    Executor(bot).run_incident(incident_id)
    assert steps(bot, incident_id)[0].status == "succeeded", steps(bot, incident_id)[0].error
    assert len(restored(rds_setup.moto)) == 1


# --------------------------------------------------------------- refusals


def test_a_time_and_latest_together_are_refused_by_rollbot_itself(
    rds_setup: RdsSetup, bot: Rollbot
) -> None:
    moto = rds_setup.moto
    incident_id = opened(bot)
    with pytest.raises(RollbotError, match="not both"):
        bot.choose_method(
            incident_id,
            "pitr",
            "alice",
            {"snapshot": "latest", "restore_to": inside_window(rds_setup)},
        )
    # Below the step, the client refuses both as well (moto would accept them).
    client = RdsClient(rds_setup.settings.environment("production").section)
    with pytest.raises(RdsError, match="either RestoreTime or UseLatestRestorableTime"):
        client.restore_instance(
            SourceDBInstanceIdentifier=SOURCE,
            TargetDBInstanceIdentifier=f"{SOURCE}-restored-both",
            RestoreTime=datetime.now(UTC),
            UseLatestRestorableTime=True,
        )
    assert moto.mutations() == [] and restored(moto) == []
    moto.client().restore_db_instance_to_point_in_time(  # what moto itself lets through
        SourceDBInstanceIdentifier=SOURCE,
        TargetDBInstanceIdentifier=f"{SOURCE}-moto-both",
        RestoreTime=datetime.now(UTC),
        UseLatestRestorableTime=True,
    )
    assert bot.get(incident_id).method is None  # still open for another choice


@pytest.mark.parametrize(
    ("shift", "reason"),
    [
        (timedelta(hours=-1), "outside the restore window"),  # before the instance existed
        (timedelta(minutes=10), "in the future"),
    ],
)
def test_a_time_outside_the_window_is_refused_in_the_plan_before_any_change(
    rds_setup: RdsSetup, bot: Rollbot, shift: timedelta, reason: str
) -> None:
    moto = rds_setup.moto
    before = moto.instance_ids()
    incident_id = opened(bot)
    moment = (rds_setup.created_at if shift < timedelta(0) else datetime.now(UTC)) + shift
    with pytest.raises(RollbotError, match=reason) as refused:
        bot.choose_method(incident_id, "pitr", "alice", {"restore_to": moment.isoformat()})
    assert "restore window" in str(refused.value) and " UTC to " in str(refused.value)
    assert moto.mutations() == [] and moto.instance_ids() == before
    assert bot.get(incident_id).method is None


def test_an_unknown_instance_and_missing_credentials_are_one_plain_line(
    rds_setup: RdsSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto = rds_setup.moto
    folder = tmp_path / "unknown"
    folder.mkdir()
    config = write_config(folder, moto, rds_setup.restored_url, 'instance_id = "orders-nope"')
    rollbot = Rollbot.open(load_config(config))
    try:
        incident_id = opened(rollbot)
        with pytest.raises(RollbotError, match="DBInstanceNotFound") as refused:
            rollbot.choose_method(incident_id, "pitr", "alice", {"snapshot": "latest"})
        assert "check [environments.NAME.rds] instance_id and region" in str(refused.value)
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        with pytest.raises(RollbotError, match="no AWS credentials found") as refused:
            rollbot.choose_method(incident_id, "pitr", "alice", {"snapshot": "latest"})
        assert "\n" not in str(refused.value)
        assert rollbot.get(incident_id).method is None
    finally:
        rollbot.store.dispose()
    assert moto.mutations() == []


def test_backups_off_means_no_pitr_said_plainly(rds_setup: RdsSetup, bot: Rollbot) -> None:
    rds_setup.moto.client().modify_db_instance(
        DBInstanceIdentifier=SOURCE, BackupRetentionPeriod=0, ApplyImmediately=True
    )
    incident_id = opened(bot)
    with pytest.raises(RollbotError, match="automated backups off"):
        bot.choose_method(incident_id, "pitr", "alice", {"snapshot": "latest"})


def test_a_name_collision_is_refused_in_the_plan_and_at_the_run(
    rds_setup: RdsSetup, bot: Rollbot
) -> None:
    moto = rds_setup.moto
    incident_id = opened(bot)
    bot.choose_method(incident_id, "pitr", "alice", {"snapshot": "latest"})
    new_id = steps(bot, incident_id)[0].params["new_id"]
    moto.client().create_db_instance(  # someone took the name between plan and run
        DBInstanceIdentifier=new_id,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="x",
        MasterUserPassword="someone-elses-1",
        AllocatedStorage=20,
    )
    bot.request_approval(incident_id, "alice")
    bot.approve(incident_id, "bob")
    bot.start(incident_id, "alice")
    failed = Executor(bot).run_incident(incident_id)
    assert failed.state == "failed"
    assert f"an RDS instance named {new_id} already exists" in (
        steps(bot, incident_id)[0].error or ""
    )
    assert moto.actions("RestoreDBInstanceToPointInTime") == []
    assert moto.instance(new_id)["DBInstanceClass"] == "db.t3.micro"  # theirs, untouched


# ------------------------------------------------------------ crash safety


class Killed(BaseException):
    """What SIGKILL is to the step: it stops right after the sent mark was stored."""


def context_for(bot: Rollbot, incident_id: int, stored: list[dict[str, Any]]) -> StepContext:
    incident = bot.get(incident_id)
    ctx = bot._context(incident, bot.environment_of(incident))

    def store(data: dict[str, Any]) -> None:
        stored.append(dict(data))
        if data.get("sent"):
            raise Killed

    ctx.store_external = store
    return ctx


def test_resume_after_a_crash_polls_and_never_restores_again(
    rds_setup: RdsSetup, bot: Rollbot
) -> None:
    moto = rds_setup.moto
    incident_id = opened(bot)
    bot.choose_method(incident_id, "pitr", "alice", {"restore_to": inside_window(rds_setup)})
    row = steps(bot, incident_id)[0]
    step = build_step(row.kind, row.params)
    stored: list[dict[str, Any]] = []
    with pytest.raises(Killed):
        step.run(context_for(bot, incident_id, stored))
    assert stored[0] == {"intent": {"instance_id": row.params["new_id"], "source": SOURCE}}
    assert stored[-1]["sent"] is True
    assert moto.actions("RestoreDBInstanceToPointInTime") == ["RestoreDBInstanceToPointInTime"]

    ctx = bot._context(bot.get(incident_id), bot.environment_of(bot.get(incident_id)))
    ctx.external = stored[-1]  # what the step row holds after the restart
    result = step.resume(ctx)  # type: ignore[attr-defined]
    assert result.ok, result.summary
    assert moto.actions("RestoreDBInstanceToPointInTime") == ["RestoreDBInstanceToPointInTime"]
    assert restored(moto) == [row.params["new_id"]]
    assert result.target is not None and result.target.ref["instance_id"] == row.params["new_id"]


def rollbot_process(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "--config", str(config), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_process_killed_while_waiting_resumes_without_a_second_restore(
    rds_setup: RdsSetup, bot: Rollbot
) -> None:
    moto = rds_setup.moto
    incident_id = opened(bot)
    bot.choose_method(incident_id, "pitr", "alice", {"restore_to": inside_window(rds_setup)})
    bot.request_approval(incident_id, "alice")
    bot.approve(incident_id, "bob")
    ref = bot.get(incident_id).ref
    moto.hold()  # the restored instance stays "creating" until released

    def waiting() -> bool:
        restore = steps(bot, incident_id)[0]
        polls = moto.actions("DescribeDBInstances")
        return bool((restore.external or {}).get("sent")) and len(polls) >= 6

    first = rollbot_process(rds_setup.config, "run", ref, "--as", "alice")
    try:
        wait_until(lambda: first.poll() is not None or waiting(), "the restore to be waited on")
        assert first.poll() is None, first.communicate()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.stdout.close()  # type: ignore[union-attr]
        first.stderr.close()  # type: ignore[union-attr]
    moto.hold(False)

    again = rollbot_process(rds_setup.config, "run", ref, "--as", "alice")
    out, err = again.communicate(timeout=120)
    restore = steps(bot, incident_id)[0]
    assert restore.status == "succeeded", (restore.error, out, err)
    assert restore.attempt == 2
    assert moto.actions("RestoreDBInstanceToPointInTime") == ["RestoreDBInstanceToPointInTime"]
    assert restored(moto) == [restore.params["new_id"]]
    audit = (rds_setup.config.parent / "audit.log").read_text()
    assert "resumes waiting for that operation" in audit and SECRET_KEY not in audit


def test_after_an_interruption_only_our_half_created_instance_is_removed(
    rds_setup: RdsSetup, bot: Rollbot
) -> None:
    moto = rds_setup.moto
    incident_id = opened(bot)
    bot.choose_method(incident_id, "pitr", "alice", {"snapshot": "latest"})
    row = steps(bot, incident_id)[0]
    step = build_step(row.kind, row.params)
    stored: list[dict[str, Any]] = []
    with pytest.raises(Killed):
        step.run(context_for(bot, incident_id, stored))
    new_id = row.params["new_id"]
    ctx = bot._context(bot.get(incident_id), bot.environment_of(bot.get(incident_id)))
    ctx.external = stored[-1]
    listed = step.after_interruption(ctx, False)  # type: ignore[attr-defined]
    assert "half-created copy rollbot made for" in listed[0] and new_id in restored(moto)

    other = bot._context(bot.get(incident_id), bot.environment_of(bot.get(incident_id)))
    other.incident_id = incident_id + 100  # another incident's record of the same name
    other.external = stored[-1]
    assert "not tagged" in step.after_interruption(other, True)[0]  # type: ignore[attr-defined]
    assert new_id in restored(moto)

    removed = step.after_interruption(ctx, True)  # type: ignore[attr-defined]
    assert removed[0].startswith(f"deleted RDS instance {new_id}")
    assert restored(moto) == [] and SOURCE in moto.instance_ids()


# ----------------------------------------------------------------- Aurora


@pytest.fixture
def aurora_setup(
    moto_rds: MotoRds,  # noqa: F811
    new_database: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> RdsSetup:
    url = new_database(f"rds_aurora_{tmp_path.name[-12:].replace('-', '_')}")
    created = moto_rds.make_cluster("orders-aurora")
    config = write_config(tmp_path, moto_rds, url, 'cluster_id = "orders-aurora"')
    apply_migrations(url, read_journal(tmp_path / "migrations"), upto=2)
    monkeypatch.setenv("RDS_TEST_PROD_URL", url)
    return RdsSetup(moto_rds, config, load_config(config), url, created)


def test_aurora_restores_the_cluster_then_adds_its_writer(aurora_setup: RdsSetup) -> None:
    moto = aurora_setup.moto
    rollbot = aurora_setup.bot()
    try:
        incident_id = approved(rollbot, {"restore_to": inside_window(aurora_setup)})
        restore = steps(rollbot, incident_id)[0]
        assert "writer instance orders-aurora-restored-" in restore.plan_text
        assert ": db.r6g.xlarge (aurora-postgresql)" in restore.plan_text
        Executor(rollbot).run_incident(incident_id)
        restore = steps(rollbot, incident_id)[0]
        assert restore.status == "succeeded", restore.error
        person_done(rollbot, incident_id)
        done = Executor(rollbot).run_incident(incident_id)
        assert done.state == "verifying", [s.error for s in done.steps]
        verify = steps(rollbot, incident_id)[-1]
    finally:
        rollbot.store.dispose()
    assert moto.mutations() == ["RestoreDBClusterToPointInTime", "CreateDBInstance"]
    new_cluster = restore.params["new_id"]
    described = moto.client().describe_db_clusters(DBClusterIdentifier=new_cluster)
    cluster = described["DBClusters"][0]
    assert cluster["Engine"] == "aurora-postgresql"
    writer = moto.instance(restore.params["writer_id"])
    assert writer["DBClusterIdentifier"] == new_cluster
    assert writer["DBInstanceClass"] == "db.r6g.xlarge"  # the source writer's class
    assert restore.result["database_target"]["ref"]["cluster_id"] == new_cluster
    assert cluster["Endpoint"] in restore.result["summary"]
    assert verify.result["head"] == BEFORE_HEAD


def test_aurora_resume_adds_the_writer_once_and_never_restores_again(
    aurora_setup: RdsSetup,
) -> None:
    moto = aurora_setup.moto
    rollbot = aurora_setup.bot()
    try:
        incident_id = opened(rollbot)
        rollbot.choose_method(incident_id, "pitr", "alice", {"snapshot": "latest"})
        row = steps(rollbot, incident_id)[0]
        step = build_step(row.kind, row.params)
        stored: list[dict[str, Any]] = []
        with pytest.raises(Killed):  # killed right after the cluster restore was recorded
            step.run(context_for(rollbot, incident_id, stored))
        assert moto.mutations() == ["RestoreDBClusterToPointInTime"]
        after_cluster = dict(stored[-1])
        # A restart; then one as if killed after asking for the writer, before recording it.
        for which in ("after the cluster restore", "after asking for the writer"):
            ctx = rollbot._context(
                rollbot.get(incident_id), rollbot.environment_of(rollbot.get(incident_id))
            )
            ctx.external = (
                after_cluster
                if which == "after the cluster restore"
                else next(
                    d for d in stored if "instance_intent" in d and "instance_created" not in d
                )
            )
            ctx.store_external = lambda data: stored.append(dict(data))
            result = step.resume(ctx)  # type: ignore[attr-defined]
            assert result.ok, (which, result.summary)
    finally:
        rollbot.store.dispose()
    assert moto.mutations() == ["RestoreDBClusterToPointInTime", "CreateDBInstance"]
    assert stored[-1]["instance_created"] == row.params["writer_id"]


def test_aurora_refuses_a_time_outside_the_clusters_window(
    moto_rds: MotoRds,  # noqa: F811
    new_database: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = new_database("rds_aurora_window")
    created = moto_rds.make_cluster("orders-aurora")
    config = write_config(tmp_path, moto_rds, url, 'cluster_id = "orders-aurora"')
    monkeypatch.setenv("RDS_TEST_PROD_URL", url)
    rollbot = Rollbot.open(load_config(config))
    try:
        incident_id = opened(rollbot)
        early = (created - timedelta(days=1)).isoformat()
        with pytest.raises(RollbotError, match="outside the restore window"):
            rollbot.choose_method(incident_id, "pitr", "alice", {"restore_to": early})
    finally:
        rollbot.store.dispose()
    assert moto_rds.mutations() == []


def test_a_restore_rds_refuses_fails_the_step_plainly_and_leaves_the_incident_open(
    rds_setup: RdsSetup, tmp_path: Path
) -> None:
    moto = rds_setup.moto
    folder = tmp_path / "override"
    folder.mkdir()
    config = write_config(
        folder,
        moto,
        rds_setup.restored_url,
        f'instance_id = "{SOURCE}"',
        'parameter_group = "orders-pg99"\ninstance_class = "db.r6g.xlarge"',
    )
    rollbot = Rollbot.open(load_config(config))
    try:
        incident_id = approved(rollbot, {"snapshot": "latest"})
        plan = steps(rollbot, incident_id)[0].plan_text
        assert "parameter group: orders-pg99 (set by [environments.production.rds])" in plan
        assert "instance class: db.r6g.xlarge (set by [environments.production.rds])" in plan
        failed = Executor(rollbot).run_incident(incident_id)
        assert failed.state == "failed"
        error = steps(rollbot, incident_id)[0].error or ""
        assert error.startswith(f"RDS refused restoring {SOURCE} to a point in time: "), error
        assert "\n" not in error and SECRET_KEY not in error
        assert restored(moto) == []  # nothing was created
        rollbot.choose_method(incident_id, "pitr", "alice", {"snapshot": "latest"})
        assert rollbot.get(incident_id).state == "method_chosen"  # another try is possible
    finally:
        rollbot.store.dispose()
