"""``rollbot drill --env NAME --allow-cost`` on RDS (moto's server) and Cloud SQL (the local
Admin API fake, every request and response checked against the discovery document).

Acceptance: refused without ``--allow-cost`` before any API call; with it, the runbook's PITR
restores into a new instance at the latest restorable time, the verify runs there, and that
instance is deleted (and gone) at the end, also when the verify failed; an instance that
could not be deleted is a leftover (exit 1, named with how to delete it); the source is
never modified. RDS's restored instance is played by a database on the test cluster, reached
through ``connect_host``/``connect_port`` as in tests/slack/test_rds_rollback.py.
"""

from __future__ import annotations

import getpass
import shutil
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from bot.models import AuditEvent
from bot.service import Rollbot
from handlers.cli import main
from handlers.runtime import load_config
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.rds.client import RdsClient
from tests import cloudsql_support
from tests.cloudsql_support import INSTANCE, CloudSqlSetup
from tests.config_text import TEAM_HEAD
from tests.neon_fixtures import BEFORE_HEAD, EXAMPLE
from tests.rds_support import SECRET_KEY, MotoRds, moto_rds, moto_server  # noqa: F401

pytestmark = pytest.mark.postgres
cloudsql_setup = cloudsql_support.cloudsql_setup  # the fixture, for this module
SOURCE = "orders-prod"
URL_ENV = "RDS_DRILL_TEST_URL"

RDS_CONFIG = (
    TEAM_HEAD
    + """
[environments.production]
tier = "production"
provider = "rds"
database_url_env = "{url_env}"
migrations_dir = "{migrations}"
smoke_queries = {smoke}

[environments.production.deploy]
repoint_command = "touch {repointed}"

[environments.production.rds]
{target}
endpoint_url = "{endpoint}"
poll_seconds = 0.05
max_wait_minutes = 2
connect_host = "127.0.0.1"
connect_port = {port}
"""
)


@dataclass
class RdsDrill:
    moto: MotoRds
    config: Path
    out: Path
    repointed: Path  # the team's repoint command would create it: a drill never runs it

    def run(self, *extra: str) -> int:
        argv = ["--config", str(self.config), "drill", "--env", "production"]
        return main([*argv, "--output", str(self.out), *extra])


def rds_drill(
    moto: MotoRds, folder: Path, url: str, *, smoke: str = "[]", target: str = ""
) -> RdsDrill:
    migrations = folder / "migrations"
    shutil.copytree(EXAMPLE, migrations)
    apply_migrations(url, read_journal(migrations), upto=2)  # "the restored instance"
    config = folder / "rollbot.toml"
    config.write_text(
        textwrap.dedent(
            RDS_CONFIG.format(
                state=folder / "state.db",
                os_user=getpass.getuser(),
                url_env=URL_ENV,
                migrations=migrations,
                smoke=smoke,
                repointed=folder / "repointed",
                target=target or f'instance_id = "{SOURCE}"',
                endpoint=moto.url,
                port=urlsplit(url).port,
            )
        )
    )
    return RdsDrill(moto, config, folder / "out", folder / "repointed")


@pytest.fixture
def rds(
    moto_rds: MotoRds,  # noqa: F811
    new_database: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., RdsDrill]:
    """A factory: the source instance on moto, the config, the database playing the copy."""

    def make(**kwargs: Any) -> RdsDrill:
        url = new_database(f"mdrill_{tmp_path.name[-12:].replace('-', '_')}")
        monkeypatch.setenv(URL_ENV, url)
        return rds_drill(moto_rds, tmp_path, url, **kwargs)

    return make


def source_state(moto: MotoRds, instance_id: str = SOURCE) -> dict[str, Any]:
    """What a drill must never change on the source instance."""
    found = moto.instance(instance_id)
    keys = (
        "DBInstanceStatus",
        "DBInstanceClass",
        "AllocatedStorage",
        "MultiAZ",
        "Endpoint",
        "BackupRetentionPeriod",
        "DeletionProtection",
        "TagList",
        "DBParameterGroups",
        "VpcSecurityGroups",
    )
    return {k: found.get(k) for k in keys}


def drill_events(config: Path) -> list[AuditEvent]:
    bot = Rollbot.open(load_config(config))
    try:
        with bot.store.read() as session:
            rows = session.scalars(select(AuditEvent).where(AuditEvent.kind == "drill")).all()
            return [AuditEvent(actor=r.actor, message=r.message, data=r.data) for r in rows]
    finally:
        bot.store.dispose()


def report_text(out: Path) -> str:
    (md,) = out.glob("drill-report-*.md")
    return md.read_text()


# -- refusals ----------------------------------------------------------------------------


def test_without_allow_cost_the_drill_is_refused_before_any_api_call(
    rds: Callable[..., RdsDrill], capsys: pytest.CaptureFixture[str]
) -> None:
    drill = rds()
    drill.moto.make_instance(SOURCE)
    drill.moto.recorder.actions.clear()

    assert drill.run() == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"rollbot: this drill restores RDS instance {SOURCE} into a new billable instance and "
        "deletes it afterwards; pass --allow-cost to run it"
    ]
    assert drill.moto.actions() == []  # not even a describe
    assert not drill.out.exists()


def test_local_only_flags_are_refused_with_a_managed_env(
    rds: Callable[..., RdsDrill], capsys: pytest.CaptureFixture[str]
) -> None:
    drill = rds()
    assert drill.run("--allow-cost", "--keep") == 2
    assert "--keep: only for the local drill" in capsys.readouterr().err
    assert drill.moto.actions() == []


def test_allow_cost_without_env_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "--allow-cost"]) == 2
    assert "--allow-cost is for --env" in capsys.readouterr().err


# -- RDS -------------------------------------------------------------------------------------


def test_rds_drill_restores_verifies_and_deletes_the_new_instance(
    rds: Callable[..., RdsDrill], capsys: pytest.CaptureFixture[str]
) -> None:
    drill = rds()
    drill.moto.make_instance(SOURCE)
    before = source_state(drill.moto)

    assert drill.run("--allow-cost") == 0, capsys.readouterr()

    moto = drill.moto
    assert moto.mutations() == ["RestoreDBInstanceToPointInTime", "DeleteDBInstance"]
    assert moto.instance_ids() == [SOURCE]  # the copy is gone, waited for
    assert source_state(moto) == before
    assert not drill.repointed.exists()  # the team's repoint command never ran
    text = report_text(drill.out)
    assert "1 of 1 methods verified" in text
    new_id = next(w for w in text.split() if w.startswith(f"{SOURCE}-restored-"))
    assert f"restored RDS instance {SOURCE} into RDS instance {new_id}" in text
    assert f"deleted RDS instance {new_id}" in text
    assert "phases: restore " in text and ", verify " in text and ", delete " in text
    assert f"migrations head {BEFORE_HEAD}" in text
    (event,) = drill_events(drill.config)
    assert event.message.startswith("passed: 1/1 methods verified on production")
    out = capsys.readouterr()
    assert SECRET_KEY not in out.out + out.err + text


def test_rds_a_failing_verify_still_deletes_the_new_instance(
    rds: Callable[..., RdsDrill], capsys: pytest.CaptureFixture[str]
) -> None:
    drill = rds(smoke='["SELECT 1/0"]')
    drill.moto.make_instance(SOURCE)
    before = source_state(drill.moto)

    assert drill.run("--allow-cost") == 1

    assert drill.moto.mutations() == ["RestoreDBInstanceToPointInTime", "DeleteDBInstance"]
    assert drill.moto.instance_ids() == [SOURCE]
    assert source_state(drill.moto) == before
    text = report_text(drill.out)
    assert "0 of 1 methods verified" in text and "division by zero" in text
    assert "deleted RDS instance" in text
    assert "left behind" not in capsys.readouterr().err
    (event,) = drill_events(drill.config)
    assert event.message.startswith("FAILED")


def test_rds_an_instance_that_cannot_be_deleted_is_a_leftover(
    rds: Callable[..., RdsDrill],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    drill = rds()
    drill.moto.make_instance(SOURCE)
    moto = drill.moto
    original = RdsClient.delete_instance

    def protected_first(self: RdsClient, instance_id: str) -> None:
        """Someone turned deletion protection on: RDS (moto) refuses the delete itself."""
        moto.client().modify_db_instance(DBInstanceIdentifier=instance_id, DeletionProtection=True)
        original(self, instance_id)

    monkeypatch.setattr(RdsClient, "delete_instance", protected_first)

    assert drill.run("--allow-cost") == 1

    (left,) = [i for i in moto.instance_ids() if i != SOURCE]
    err = capsys.readouterr().err
    assert f"left behind: RDS instance {left} could not be deleted" in err
    assert f"aws rds delete-db-instance --region us-east-1 --db-instance-identifier {left}" in err
    text = report_text(drill.out)
    assert "1 of 1 methods verified" in text  # the method worked; the clean-up did not
    assert "**clean-up FAILED**" in text and left in text
    assert moto.instance(SOURCE)["DeletionProtection"] is False  # the source: never touched


def test_aurora_drill_deletes_the_writer_then_the_cluster(
    rds: Callable[..., RdsDrill], capsys: pytest.CaptureFixture[str]
) -> None:
    drill = rds(target='cluster_id = "orders-aurora"')
    moto = drill.moto
    moto.make_cluster("orders-aurora")
    clusters = lambda: sorted(  # noqa: E731
        c["DBClusterIdentifier"] for c in moto.client().describe_db_clusters()["DBClusters"]
    )

    assert drill.run("--allow-cost") == 0, capsys.readouterr()

    assert moto.mutations() == [
        "RestoreDBClusterToPointInTime",
        "CreateDBInstance",
        "DeleteDBInstance",
        "DeleteDBCluster",
    ]
    assert clusters() == ["orders-aurora"]
    assert moto.instance_ids() == ["orders-aurora-writer"]


# -- Cloud SQL -------------------------------------------------------------------------------


def cloudsql_run(setup: CloudSqlSetup, out: Path, *extra: str) -> int:
    argv = ["--config", str(setup.config), "drill", "--env", "production", "--output", str(out)]
    return main([*argv, *extra])


def test_cloudsql_drill_clones_to_the_latest_time_verifies_and_deletes(
    cloudsql_setup: CloudSqlSetup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup, out = cloudsql_setup, tmp_path / "out"
    source = setup.api.instance(INSTANCE)
    assert source is not None
    before = source.resource(setup.api.project)

    assert cloudsql_run(setup, out, "--allow-cost") == 0, capsys.readouterr()

    assert setup.mutations() == ["instances.clone", "instances.delete"]
    (clone,) = [r for r in setup.api.requests if r.api_method == "instances.clone"]
    (latest,) = [r for r in setup.api.requests if r.api_method.endswith("getLatestRecoveryTime")]
    context = clone.body["cloneContext"]
    new = context["destinationInstanceName"]
    assert clone.path.endswith(f"/instances/{INSTANCE}/clone")
    (deleted,) = [r for r in setup.api.requests if r.api_method == "instances.delete"]
    assert deleted.path.endswith(f"/instances/{new}") and new.startswith(f"{INSTANCE}-restored-")
    assert setup.api.state.deleted == [new] and setup.api.instance(new) is None
    delete_op = next(o for o in setup.api.operations() if o.operation_type == "DELETE")
    assert delete_op.status == "DONE" and delete_op.seen[-1] == "DONE"  # waited for DONE
    assert latest.status == 200 and context["pointInTime"]
    assert setup.api.instance(INSTANCE).resource(setup.api.project) == before  # untouched
    text = report_text(out)
    assert "1 of 1 methods verified" in text
    assert f"deleted Cloud SQL instance {new}" in text
    assert f"into Cloud SQL instance {new}" in text
    setup.api.assert_no_violations()


def test_cloudsql_without_allow_cost_calls_no_api(
    cloudsql_setup: CloudSqlSetup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cloudsql_run(cloudsql_setup, tmp_path / "out") == 2
    assert cloudsql_setup.api.requests == []
    assert f"restores Cloud SQL instance {INSTANCE} (project" in capsys.readouterr().err


def test_cloudsql_a_delete_that_fails_is_a_leftover_and_exit_1(
    cloudsql_setup: CloudSqlSetup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup, out = cloudsql_setup, tmp_path / "out"
    setup.api.fail_next_operation("the instance is in use", kind="DELETE")

    assert cloudsql_run(setup, out, "--allow-cost") == 1

    left = [n for n in setup.api.state.instances if n != INSTANCE]
    assert len(left) == 1 and left[0].startswith(f"{INSTANCE}-restored-")
    err = capsys.readouterr().err
    assert f"left behind: Cloud SQL instance {left[0]} could not be deleted" in err
    assert "the instance is in use" in err
    assert f"gcloud sql instances delete {left[0]} --project {setup.api.project}" in err
    assert "**clean-up FAILED**" in report_text(out)
    assert setup.api.instance(INSTANCE).state == "RUNNABLE"
    setup.api.assert_no_violations()


def test_an_environment_that_restores_in_place_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rollbot.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "state.db"}"\n\n[environments.local]\n'
        'tier = "staging"\ndatabase_url_env = "LOCAL_URL"\n'
    )
    assert main(["--config", str(config), "drill", "--env", "local", "--allow-cost"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "uses provider 'postgres'" in err[0]
    assert "Neon, RDS and Cloud SQL" in err[0]
