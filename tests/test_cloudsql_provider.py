"""Cloud SQL's point-in-time clone and backup restore, against the local Cloud SQL API fake
(every request and response checked against Google's discovery document) and real
databases on the test cluster."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.errors import RollbotError
from bot.executor import Executor
from bot.methods import plan_steps
from bot.service import Rollbot
from bot.steps import StepContext, build_step, registered_kinds
from handlers.runtime import load_config
from providers.cloudsql.plans import CloudSqlPlans
from tests import cloudsql_support
from tests.cloudsql_support import (
    BEFORE_HEAD,
    INSTANCE,
    PROBLEMATIC,
    URL_ENV,
    CloudSqlSetup,
    has_priority_column,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[1]
cloudsql_setup = cloudsql_support.cloudsql_setup  # the fixture, for this module
RESTORED = re.compile(rf"{INSTANCE}-restored-\d{{8}}-\d{{6}}")


@pytest.fixture
def bot(cloudsql_setup: CloudSqlSetup) -> Any:
    rollbot = Rollbot.open(cloudsql_setup.settings)
    yield rollbot
    rollbot.store.dispose()


def triaged(bot: Rollbot) -> int:
    incident = bot.open_incident("alice", f"{PROBLEMATIC} corrupted rows", environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    return incident.id


def approved(bot: Rollbot, **options: Any) -> int:
    incident_id = triaged(bot)
    bot.choose_method(incident_id, "pitr", "alice", options)
    bot.request_approval(incident_id, "alice")
    bot.approve(incident_id, "bob")
    bot.start(incident_id, "alice")
    return incident_id


def steps(bot: Rollbot, incident_id: int) -> list:
    return sorted(bot.get(incident_id).steps, key=lambda s: s.seq)


def context(setup: CloudSqlSetup, results: list[dict] | None = None) -> StepContext:
    """A step's context outside an incident (the clone plan needs the lead's repoint step)."""
    lines: list[str] = []
    return StepContext(
        incident_id=1,
        settings=setup.settings,
        environment=setup.settings.environment("production"),
        report=lines.append,
        audit=lambda *_args: None,
        results=list(results or []),
    )


def requests_of(setup: CloudSqlSetup, api_method: str) -> list:
    return [r for r in setup.api.requests if r.api_method == api_method]


# -- backup restore (in place) ------------------------------------------------------------


def test_backup_restore_takes_a_confirmed_backup_first_then_overwrites_in_place(
    cloudsql_setup: CloudSqlSetup, bot: Rollbot
) -> None:
    setup = cloudsql_setup
    newest_ok = setup.api.state.backups[1]  # 6 h ago; the 1 h old one FAILED
    incident_id = approved(bot, from_backup=True)
    backup, restore, verify = steps(bot, incident_id)
    assert [backup.kind, restore.kind, verify.kind] == [
        "cloudsql.backup",
        "cloudsql.restore_backup",
        "cloudsql.verify",
    ]
    assert restore.params["snapshot"] == newest_ok.id
    assert "OVERWRITE" in restore.plan_text and "lost" in restore.plan_text
    assert has_priority_column(setup.live_url())

    done = Executor(bot).run_incident(incident_id)
    assert done.state == "verifying", [s.error for s in done.steps]
    assert setup.mutations() == ["backupRuns.insert", "instances.restoreBackup"]
    calls = setup.api.calls()
    insert, restore_at = calls.index("backupRuns.insert"), calls.index("instances.restoreBackup")
    assert "backupRuns.get" in calls[insert:restore_at]  # read back before the restore
    (on_demand,) = [b for b in setup.api.state.backups if b.type == "ON_DEMAND"]
    assert on_demand.status == "SUCCESSFUL"
    backup, restore, verify = steps(bot, incident_id)
    assert backup.result["safety"]["name"] == f"backup run {on_demand.id}"
    (sent,) = requests_of(setup, "instances.restoreBackup")
    assert sent.body["restoreBackupContext"]["backupRunId"] == newest_ok.id
    assert setup.api.instance(INSTANCE).restored_from == [newest_ok.id]
    assert not has_priority_column(setup.live_url())
    assert verify.result["head"] == BEFORE_HEAD
    setup.api.assert_no_violations()


def test_a_backup_that_ends_done_with_an_error_stops_before_the_restore(
    cloudsql_setup: CloudSqlSetup, bot: Rollbot
) -> None:
    setup = cloudsql_setup
    setup.api.fail_next_operation("Backup failed: the instance is out of disk quota.")
    incident_id = approved(bot, from_backup=True)
    failed = Executor(bot).run_incident(incident_id)
    assert failed.state == "failed"
    error = steps(bot, incident_id)[0].error or ""
    assert "failed: Backup failed: the instance is out of disk quota." in error
    assert setup.mutations() == ["backupRuns.insert"]  # no restore without a safety copy
    assert has_priority_column(setup.live_url())
    bot.choose_method(incident_id, "pitr", "alice", {"from_backup": True})
    assert bot.get(incident_id).state == "method_chosen"  # open for another try
    setup.api.assert_no_violations()


def test_a_restore_that_ends_done_with_an_error_is_a_failed_step(
    cloudsql_setup: CloudSqlSetup, bot: Rollbot
) -> None:
    setup = cloudsql_setup
    setup.api.fail_next_operation("Restore failed.", kind="RESTORE_VOLUME")
    incident_id = approved(bot, from_backup=True)
    failed = Executor(bot).run_incident(incident_id)
    assert failed.state == "failed"
    backup, restore, _verify = steps(bot, incident_id)
    assert backup.status == "succeeded"
    assert "RESTORE_VOLUME" in (restore.error or "") and "Restore failed." in (restore.error or "")
    assert has_priority_column(setup.live_url())  # DONE with an error changed nothing
    setup.api.assert_no_violations()


def test_other_backups_are_offered_and_a_picked_one_is_restored(
    cloudsql_setup: CloudSqlSetup, bot: Rollbot
) -> None:
    setup = cloudsql_setup
    older = setup.api.state.backups[0]
    incident_id = triaged(bot)
    bot.choose_method(incident_id, "pitr", "alice", {"from_backup": True})
    offered = bot.restore_sources(incident_id)
    assert [s.name for s in offered] == [setup.api.state.backups[1].id, older.id]  # newest first
    assert offered[0].chosen and "FAILED" not in " ".join(s.label for s in offered)
    bot.replan(incident_id, "alice", snapshot=older.id)
    assert steps(bot, incident_id)[1].params["snapshot"] == older.id
    with pytest.raises(RollbotError, match="no SUCCESSFUL backup run '42'"):
        bot.replan(incident_id, "alice", snapshot="42")
    assert setup.mutations() == []


def test_a_clone_plan_offers_the_backups_and_picking_one_plans_the_backup_restore(
    cloudsql_setup: CloudSqlSetup, bot: Rollbot
) -> None:
    setup = cloudsql_setup
    incident_id = triaged(bot)
    moment = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    bot.choose_method(incident_id, "pitr", "alice", {"restore_to": moment})
    offered = bot.restore_sources(incident_id)
    assert offered and all("OVERWRITES prod-db in place" in (s.warning or "") for s in offered)
    bot.replan(incident_id, "alice", snapshot=offered[-1].name)  # `rollbot plan --snapshot`
    kinds = [s.kind for s in steps(bot, incident_id)]
    assert kinds == ["cloudsql.backup", "cloudsql.restore_backup", "cloudsql.verify"]
    assert steps(bot, incident_id)[1].params["snapshot"] == offered[-1].name
    assert setup.mutations() == []


# -- point-in-time clone (new instance) --------------------------------------------------


def test_pitr_plans_the_clone_the_repoint_and_the_verify(cloudsql_setup: CloudSqlSetup) -> None:
    env = cloudsql_setup.settings.environment("production")
    kinds = [s.kind for s in plan_steps("pitr", env, {"restore_to": "2026-12-01T10:00:00Z"})]
    assert kinds == ["cloudsql.pitr", "deploy.repoint", "cloudsql.verify"]
    pg_dump = [s.kind for s in plan_steps("pg_dump_restore", env, {})]
    assert pg_dump[0] == "postgres.restore"  # PostgreSQL's, as on the other platforms


def test_the_clone_matches_the_discovery_document_and_verify_checks_the_new_instance(
    cloudsql_setup: CloudSqlSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = cloudsql_setup
    monkeypatch.setenv(URL_ENV, setup.source_url())  # the source is not reachable from here
    moment = datetime.now(UTC) - timedelta(hours=2)
    ctx = context(setup)
    step = build_step("cloudsql.pitr", {"before": moment.isoformat()})
    params = step.pin(ctx)  # type: ignore[attr-defined]
    assert RESTORED.fullmatch(params["new_name"])
    step = build_step("cloudsql.pitr", params)
    plan = step.plan(ctx).text()
    assert f"writes to {INSTANCE} after" in plan and "untouched" in plan
    assert "tier db-custom-2-7680, region us-central1" in plan
    assert "roughly 20 min for 100 GB" in plan  # from settings.dataDiskSizeGb
    assert setup.mutations() == []

    result = step.run(ctx)
    assert result.ok, result.summary
    (sent,) = requests_of(setup, "instances.clone")
    context_sent = sent.body["cloneContext"]
    assert context_sent["destinationInstanceName"] == params["new_name"]
    assert datetime.fromisoformat(context_sent["pointInTime"]) == moment.replace(
        microsecond=moment.microsecond // 1000 * 1000
    )
    (operation,) = setup.api.operations()
    assert operation.seen == ["PENDING", "RUNNING", "DONE"]
    assert result.target is not None
    assert result.target.ref == {"instance": params["new_name"], "project": setup.api.project}
    assert result.safety is not None and result.safety.name == INSTANCE
    assert setup.api.instance(INSTANCE).restored_from == []  # the source is not modified

    url = CloudSqlPlans().connection_url(ctx.environment, result.target)
    assert f"@127.0.0.1:{setup.cluster.port}/{setup.live}" in url  # the clone's IP, proxy port
    verified = build_step("cloudsql.verify", {}).run(context(setup, [result.stored()]))
    assert verified.ok, verified.summary
    assert verified.data["head"] == BEFORE_HEAD
    setup.api.assert_no_violations()


def test_connect_host_points_every_instance_at_the_auth_proxy(
    cloudsql_setup: CloudSqlSetup, tmp_path: Path
) -> None:
    setup = cloudsql_setup
    text = setup.config.read_text().replace("auth = ", 'connect_host = "localhost"\nauth = ')
    config = tmp_path / "proxy.toml"
    config.write_text(text)
    env = load_config(config).environment("production")
    setup.api.add_instance("prod-db-restored-20261203-101010", ip="10.1.2.3")
    from bot.steps import DatabaseTarget

    target = DatabaseTarget("x", {"instance": "prod-db-restored-20261203-101010"})
    url = CloudSqlPlans().connection_url(env, target)
    assert f"@localhost:{setup.cluster.port}/{setup.live}" in url
    with pytest.raises(RollbotError, match="no Cloud SQL instance 'gone'"):
        CloudSqlPlans().connection_url(env, DatabaseTarget("x", {"instance": "gone"}))


@pytest.mark.skipif(
    "deploy.repoint" not in registered_kinds(),
    reason="deploy.repoint (the lead's repoint step) is not in this build yet",
)
def test_pitr_through_the_incident_repoints_the_app_at_the_new_instance(
    cloudsql_setup: CloudSqlSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = cloudsql_setup
    monkeypatch.setenv(URL_ENV, setup.source_url())
    received = tmp_path / "new-url"
    repoint = f'printf %s "$ROLLBOT_NEW_DATABASE_URL" > {received}'
    text = setup.config.read_text().replace(
        "[environments.production.cloudsql]\n",
        f"[environments.production.deploy]\nrepoint_command = '{repoint}'\n\n"
        "[environments.production.cloudsql]\n",
    )
    setup.config.write_text(text)
    bot = Rollbot.open(load_config(setup.config))
    try:
        moment = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        incident_id = approved(bot, restore_to=moment)
        done = Executor(bot).run_incident(incident_id)
        assert done.state == "verifying", [s.error for s in done.steps]
        clone, repointed, verify = steps(bot, incident_id)
    finally:
        bot.store.dispose()
    new_name = clone.params["new_name"]
    assert clone.result["database_target"]["ref"] == {
        "instance": new_name,
        "project": setup.api.project,
    }
    assert repointed.status == "succeeded"
    assert received.read_text() == setup.live_url()  # the clone's IP 127.0.0.1, the proxy port
    assert verify.result["head"] == BEFORE_HEAD and new_name in verify.result["checked"]
    said = (setup.config.parent / "audit.log").read_text() + json.dumps(
        [s.result for s in (clone, repointed, verify)]
    )
    assert setup.cluster.password not in said  # the new URL went only to the command
    assert setup.mutations() == ["instances.clone"]
    assert setup.api.instance(new_name).cloned_from == (
        INSTANCE,
        requests_of(setup, "instances.clone")[0].body["cloneContext"]["pointInTime"],
    )
    setup.api.assert_no_violations()


@pytest.mark.parametrize(
    ("setting", "when", "reason"),
    [
        ({}, timedelta(days=8), "outside the restore window of prod-db"),
        ({"retention_days": 1}, timedelta(days=2), r"1 day\(s\) of transaction logs"),
        ({}, timedelta(minutes=-5), "is in the future"),
        ({"pitr_enabled": False}, timedelta(hours=1), "point-in-time recovery is not enabled"),
    ],
)
def test_a_point_cloud_sql_cannot_clone_is_refused_in_the_plan(
    cloudsql_setup: CloudSqlSetup, bot: Rollbot, setting: dict, when: timedelta, reason: str
) -> None:
    setup = cloudsql_setup
    for key, value in setting.items():
        setattr(setup.api.instance(INSTANCE), key, value)
    incident_id = triaged(bot)
    moment = (datetime.now(UTC) - when).isoformat()
    with pytest.raises(RollbotError, match=reason):
        bot.choose_method(incident_id, "pitr", "alice", {"restore_to": moment})
    assert setup.mutations() == []
    assert bot.get(incident_id).method is None  # still open for another choice


def test_an_unknown_instance_and_a_name_collision_are_refused_plainly(
    cloudsql_setup: CloudSqlSetup, bot: Rollbot
) -> None:
    setup = cloudsql_setup
    moment = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    incident_id = triaged(bot)
    setup.api.add_instance("prod-db-copy")
    with pytest.raises(RollbotError, match="'prod-db-copy' already exists in project rollbot-test"):
        bot.choose_method(
            incident_id, "pitr", "alice", {"restore_to": moment, "new_instance": "prod-db-copy"}
        )
    with pytest.raises(RollbotError, match="is not a Cloud SQL instance name"):
        bot.choose_method(
            incident_id, "pitr", "alice", {"restore_to": moment, "new_instance": "Prod_DB"}
        )
    with setup.api.lock:
        del setup.api.state.instances[INSTANCE]
    with pytest.raises(
        RollbotError,
        match=r"no Cloud SQL instance 'prod-db' in project "
        r"'rollbot-test' \(HTTP 404\)",
    ):
        bot.choose_method(incident_id, "pitr", "alice", {"restore_to": moment})
    assert setup.mutations() == []
    assert bot.get(incident_id).method is None


def test_a_name_taken_after_the_plan_is_refused_before_the_clone_is_sent(
    cloudsql_setup: CloudSqlSetup,
) -> None:
    setup = cloudsql_setup
    ctx = context(setup)
    moment = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    params = build_step("cloudsql.pitr", {"before": moment}).pin(ctx)  # type: ignore[attr-defined]
    setup.api.add_instance(params["new_name"])
    with pytest.raises(RollbotError, match="already exists"):
        build_step("cloudsql.pitr", params).run(ctx)
    assert setup.mutations() == [] and ctx.external == {}


def test_a_clone_resumed_after_a_crash_polls_and_never_clones_again(
    cloudsql_setup: CloudSqlSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = cloudsql_setup
    monkeypatch.setenv(URL_ENV, setup.source_url())
    ctx = context(setup)
    moment = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    params = build_step("cloudsql.pitr", {"before": moment}).pin(ctx)  # type: ignore[attr-defined]
    recorded: list[dict] = []

    class Crash(Exception):
        pass

    def store(data: dict) -> None:
        recorded.append(dict(data))
        if data.get("sent"):
            raise Crash  # the worker dies right after Cloud SQL accepted the clone

    ctx.store_external = store
    with pytest.raises(Crash):
        build_step("cloudsql.pitr", params).run(ctx)
    assert recorded[0]["intent"]["clone"] == params["new_name"]  # intent before the call
    after = context(setup)
    after.external = recorded[-1]
    result = build_step("cloudsql.pitr", params).resume(after)  # type: ignore[attr-defined]
    assert result.ok, result.summary
    assert setup.mutations() == ["instances.clone"]
    assert len([r for r in setup.api.requests if r.api_method == "operations.get"]) >= 3


# -- the process dies while the restore runs ----------------------------------------------


def rollbot_process(setup: CloudSqlSetup, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "--config", str(setup.config), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_process_killed_while_the_restore_runs_resumes_without_sending_it_again(
    cloudsql_setup: CloudSqlSetup, bot: Rollbot
) -> None:
    setup = cloudsql_setup
    incident_id = triaged(bot)
    bot.choose_method(incident_id, "pitr", "alice", {"from_backup": True})
    bot.request_approval(incident_id, "alice")
    bot.approve(incident_id, "bob")
    setup.api.state.running_polls_for["RESTORE_VOLUME"] = 1_000_000  # runs until we say

    def polling_the_restore() -> bool:
        restore = steps(bot, incident_id)[1]
        polls = [r for r in setup.api.requests if r.api_method == "operations.get"]
        restores = requests_of(setup, "instances.restoreBackup")
        return bool((restore.external or {}).get("sent")) and bool(restores) and len(polls) >= 5

    first = rollbot_process(setup, "run", bot.get(incident_id).ref, "--as", "alice")
    try:
        wait_until(lambda: first.poll() is not None or polling_the_restore(), "restore polling")
        assert first.poll() is None, first.communicate()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.stdout.close()  # type: ignore[union-attr]
        first.stderr.close()  # type: ignore[union-attr]
    setup.api.finish_operations()

    again = rollbot_process(setup, "run", bot.get(incident_id).ref, "--as", "alice")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, (out, err)
    done = bot.get(incident_id)
    assert done.state == "verifying", [s.error for s in done.steps]
    assert setup.mutations() == ["backupRuns.insert", "instances.restoreBackup"]  # sent once
    assert steps(bot, incident_id)[1].attempt == 2
    assert not has_priority_column(setup.live_url())
    setup.api.assert_no_violations()


# -- bad input: credentials, Google's refusals ---------------------------------------------


def test_missing_google_credentials_is_one_line_saying_how_to_provide_them(
    cloudsql_setup: CloudSqlSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = cloudsql_setup
    config = tmp_path / "adc.toml"
    config.write_text(setup.config.read_text().replace('auth = "none"\n', ""))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    rollbot = Rollbot.open(load_config(config))
    try:
        incident_id = triaged(rollbot)
        moment = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        with pytest.raises(RollbotError) as refused:
            rollbot.choose_method(incident_id, "pitr", "alice", {"restore_to": moment})
    finally:
        rollbot.store.dispose()
    message = str(refused.value)
    assert "no usable Google credentials" in message
    assert "gcloud auth application-default login" in message and "\n" not in message
    assert "no-such-key.json" not in message  # the variable's value is redacted
    assert setup.api.requests == []


def test_a_4xx_from_google_is_one_line_with_its_message_and_429_is_retried(
    cloudsql_setup: CloudSqlSetup, bot: Rollbot
) -> None:
    setup = cloudsql_setup
    moment = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    incident_id = triaged(bot)
    setup.api.fail_next(
        "GET",
        rf"/instances/{INSTANCE}$",
        403,
        "Cloud SQL Admin API has not been used in project rollbot-test before or it is disabled.",
    )
    with pytest.raises(RollbotError) as refused:
        bot.choose_method(incident_id, "pitr", "alice", {"restore_to": moment})
    assert "HTTP 403: Cloud SQL Admin API has not been used in project rollbot-test" in str(
        refused.value
    )
    setup.api.fail_next(
        "GET", rf"/instances/{INSTANCE}$", 429, "Quota exceeded.", times=2, retry_after=0
    )
    bot.choose_method(incident_id, "pitr", "alice", {"restore_to": moment})
    statuses = [r.status for r in requests_of(setup, "instances.get")]
    assert statuses[1:4] == [429, 429, 200]  # waited out, then answered
    setup.api.fail_next("GET", r"/backupRuns$", 503, "Service unavailable.", times=100)
    with pytest.raises(
        RollbotError,
        match=r"Service unavailable\. \(HTTP 503, backupRuns.list\); "
        "still failing after retries",
    ):
        bot.choose_method(incident_id, "pitr", "alice", {"from_backup": True})
    assert setup.mutations() == []


def test_auth_none_is_refused_for_googles_own_endpoint() -> None:
    from pydantic import ValidationError

    from providers.cloudsql.config import CloudSqlConfig

    with pytest.raises(ValidationError, match='auth = "none" is only for a local emulator'):
        CloudSqlConfig(project="p", instance="i", auth="none")
    with pytest.raises(ValidationError, match="only for a local"):
        CloudSqlConfig(
            project="p",
            instance="i",
            auth="none",
            api_url="https://sqladmin.us-east1.rep.googleapis.com/",
        )
    assert CloudSqlConfig(project="p", instance="i", auth="none", api_url="http://127.0.0.1:9/")
