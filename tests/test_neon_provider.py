"""Neon's two runbook methods through the incident core, against the local Neon API server
(every request and response checked against Neon's spec; branches are real databases)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from bot.errors import NotAuthorizedError, RollbotError
from bot.executor import Executor
from bot.service import Rollbot
from handlers.cli import main
from tests.neon_fixtures import API_KEY, BEFORE_HEAD, PROBLEMATIC, NeonSetup
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bot(neon_setup: NeonSetup) -> Iterator[Rollbot]:
    rollbot = Rollbot.open(neon_setup.settings)
    yield rollbot
    rollbot.store.dispose()


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'priority'"
        ).fetchall()
    return {r[0] for r in rows}


def approved(bot: Rollbot, env: str, answers: list[str], method: str, **options: str) -> int:
    incident = bot.open_incident("alice", f"{PROBLEMATIC} went wrong", environment=env)
    for answer in answers:
        bot.answer(incident.id, answer, "alice")
    bot.choose_method(incident.id, method, "alice", options or None)
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    return incident.id


def steps(bot: Rollbot, incident_id: int) -> list:
    return sorted(bot.get(incident_id).steps, key=lambda s: s.seq)


def test_migrate_makes_the_pre_migration_branch_the_next_rollback_offers(
    neon_setup: NeonSetup, bot: Rollbot
) -> None:
    server = neon_setup.server
    main_branch = server.default_branch()
    assert main(["--config", str(neon_setup.config), "migrate", "--env", "staging"]) == 0
    pre = [b for b in server.branches() if b.name.startswith(f"pre-migrate-{PROBLEMATIC}-")]
    assert len(pre) == 1 and pre[0].parent_id == main_branch.id
    assert tables(server.branch_url(pre[0].id)) == set()  # taken before the migration ran
    assert tables(neon_setup.main_url())  # the migration ran on the environment's branch
    incident = bot.open_incident("alice", "bad migration", environment="staging")
    bot.choose_method(incident.id, "neon_branch", "alice")
    rollback = steps(bot, incident.id)[0]
    assert rollback.params["branch_name"] == pre[0].name  # offered first, by default
    assert bot.restore_sources(incident.id)[0].name == pre[0].name
    server.assert_no_violations()


def test_pitr_keeps_the_current_state_and_retries_a_locked_project(
    neon_setup: NeonSetup, bot: Rollbot
) -> None:
    server = neon_setup.server
    main_branch = server.default_branch()
    restore_to = datetime.now(UTC)
    neon_setup.apply_problematic()
    server.fail_next("POST", r"/restore$", 423, message="project already has running operations")

    incident_id = approved(
        bot, "production", ["data_corruption"], "pitr", restore_to=restore_to.isoformat()
    )
    plan = bot.get(incident_id).steps[0].plan_text
    assert "preserve" in plan or "kept as branch" in plan
    assert "priority" in plan  # the schema difference between now and then is shown
    done = Executor(bot).run_incident(incident_id)
    assert done.state == "verifying", [s.error for s in done.steps]

    restores = [r for r in server.requests if r.method == "POST" and r.path.endswith("/restore")]
    assert [r.status for r in restores] == [423, 200]  # the lock was waited out, then sent once
    assert all(r.body.get("preserve_under_name") for r in restores)
    restore, verify = steps(bot, incident_id)
    preserved = server.branch(restore.params["preserve_as"])
    assert restore.result["safety"]["name"] == preserved.name
    assert tables(server.branch_url(preserved.id))  # the problematic state, kept for debugging
    assert tables(server.branch_url(main_branch.id)) == set()  # restored to before it
    assert verify.result["head"] == BEFORE_HEAD
    server.assert_no_violations()


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (timedelta(days=2), "outside the project's history window"),
        (timedelta(minutes=-5), "in the future"),
    ],
)
def test_a_restore_point_neon_cannot_restore_is_refused_in_the_plan(
    neon_setup: NeonSetup, bot: Rollbot, when: timedelta, reason: str
) -> None:
    server = neon_setup.server
    server.history_retention_seconds = 86400
    incident = bot.open_incident("alice", "corrupted rows", environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    moment = (datetime.now(UTC) - when).isoformat()
    with pytest.raises(RollbotError, match=reason):
        bot.choose_method(incident.id, "pitr", "alice", {"restore_to": moment})
    assert neon_setup.mutations() == []  # refused before any change was sent
    assert bot.get(incident.id).state == "triaging" or bot.get(incident.id).method is None


def test_the_api_key_never_reaches_the_audit_trail_or_messages(
    neon_setup: NeonSetup, bot: Rollbot
) -> None:
    neon_setup.server.fail_next("GET", r"/branches", 401, message=f"bad key {API_KEY}")
    incident = bot.open_incident("alice", "bad migration", environment="staging")
    with pytest.raises(RollbotError) as refused:
        bot.choose_method(incident.id, "neon_branch", "alice")
    assert "key rejected" in str(refused.value) and API_KEY not in str(refused.value)
    audit = (neon_setup.config.parent / "audit.log").read_text()
    assert API_KEY not in audit


def pre_migration_branch(neon_setup: NeonSetup) -> str:
    """What `rollbot migrate` leaves: a pre-migration branch, then the migration applied."""
    assert main(["--config", str(neon_setup.config), "migrate", "--env", "staging"]) == 0
    (pre,) = [b for b in neon_setup.server.branches() if b.name.startswith("pre-migrate-")]
    return pre.id


def test_branch_rollback_makes_the_pre_migration_branch_the_default_and_verifies_it(
    neon_setup: NeonSetup, bot: Rollbot
) -> None:
    server = neon_setup.server
    old_default = server.default_branch()
    pre_id = pre_migration_branch(neon_setup)
    incident_id = approved(bot, "staging", [], "neon_branch")
    waiting = Executor(bot).run_incident(incident_id)
    # No repoint command or webhook: a person points the app at the branch, then says so.
    assert waiting.state == "running", [s.error for s in waiting.steps]
    repoint = next(s for s in waiting.steps if s.kind == "deploy.repoint")
    assert repoint.status == "waiting"
    assert "set DATABASE_URL to postgresql://" in repoint.result["instructions"]
    assert "***" in repoint.result["instructions"]  # the password is never shown
    assert server.default_branch().id == pre_id
    assert all(s.status == "queued" for s in waiting.steps if s.seq > repoint.seq)  # not run yet
    with pytest.raises(NotAuthorizedError):  # neither on the incident nor an approver
        bot.decide_step(incident_id, repoint.id, "carol", "done")
    bot.decide_step(incident_id, repoint.id, "bob", "done")
    done = Executor(bot).run_incident(incident_id)
    assert done.state == "verifying", [s.error for s in done.steps]

    assert tables(server.branch_url(old_default.id))  # the old default kept as it was
    switch, repoint, verify = steps(bot, incident_id)
    assert switch.result["safety"]["name"] == old_default.name
    assert repoint.result["done_by"] == "bob" and repoint.status == "succeeded"
    assert verify.result["branch_id"] == pre_id and verify.result["head"] == BEFORE_HEAD
    assert [r.path.rsplit("/", 1)[-1] for r in server.requests if r.method == "POST"] == [
        "branches",  # the pre-migration branch
        "set_as_default",
    ]
    server.assert_no_violations()


def rollbot_process(neon_setup: NeonSetup, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "--config", str(neon_setup.config), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_process_killed_while_polling_resumes_without_sending_the_restore_again(
    neon_setup: NeonSetup, bot: Rollbot
) -> None:
    server = neon_setup.server
    restore_to = datetime.now(UTC)
    neon_setup.apply_problematic()
    incident = bot.open_incident("alice", "corrupted rows", environment="production")
    bot.answer(incident.id, "data_corruption", "alice")
    bot.choose_method(incident.id, "pitr", "alice", {"restore_to": restore_to.isoformat()})
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    server.op_polls = 1_000_000  # the restore's operations keep running until we say

    def polling() -> bool:
        restore = steps(bot, incident.id)[0]
        polls = [r for r in server.requests if "/operations/" in r.path]
        return bool((restore.external or {}).get("sent")) and len(polls) >= 2

    first = rollbot_process(neon_setup, "run", incident.ref, "--as", "alice")
    try:
        wait_until(lambda: first.poll() is not None or polling(), "the restore to be polled")
        assert first.poll() is None, first.communicate()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.stdout.close()  # type: ignore[union-attr]
        first.stderr.close()  # type: ignore[union-attr]
    server.finish_operations()

    again = rollbot_process(neon_setup, "run", incident.ref, "--as", "alice")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, (out, err)
    done = bot.get(incident.id)
    assert done.state == "verifying", [s.error for s in done.steps]
    restores = [r for r in server.requests if r.method == "POST" and r.path.endswith("/restore")]
    assert len(restores) == 1  # the mutation was sent once; the restart only polled
    restore = steps(bot, incident.id)[0]
    assert (
        restore.attempt == 2 and restore.result["safety"]["name"] == restore.params["preserve_as"]
    )
    assert (
        "resumes waiting for that operation" in (neon_setup.config.parent / "audit.log").read_text()
    )
    server.assert_no_violations()


def test_bad_choices_are_refused_plainly_and_change_nothing(
    neon_setup: NeonSetup, bot: Rollbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    pre_migration_branch(neon_setup)
    before = neon_setup.mutations()
    incident = bot.open_incident("alice", "bad migration", environment="staging")
    with pytest.raises(RollbotError, match="no branch 'br-nope' among the children of main"):
        bot.choose_method(incident.id, "neon_branch", "alice", {"snapshot": "br-nope"})
    with pytest.raises(RollbotError, match="is the branch the environment runs on now"):
        bot.choose_method(incident.id, "neon_branch", "alice", {"snapshot": "main"})
    monkeypatch.delenv("NEON_TEST_API_KEY")
    with pytest.raises(RollbotError, match=r"\$NEON_TEST_API_KEY is not set"):
        bot.choose_method(incident.id, "neon_branch", "alice")
    assert neon_setup.mutations() == before
    assert bot.get(incident.id).method is None  # still open for another choice


def test_neon_down_is_one_plain_line(neon_setup: NeonSetup, tmp_path: Path) -> None:
    from providers.postgres.cluster import free_port

    down = f"http://127.0.0.1:{free_port()}/api/v2"
    text = neon_setup.config.read_text().replace(neon_setup.server.url, down)
    config = tmp_path / "down.toml"
    config.write_text(
        text.replace("poll_seconds = 0.05", "poll_seconds = 0.05\napi_wait_seconds = 0.5")
    )
    from handlers.runtime import load_config

    rollbot = Rollbot.open(load_config(config))
    try:
        incident = rollbot.open_incident("alice", "bad migration", environment="staging")
        with pytest.raises(RollbotError, match="Neon API unreachable") as refused:
            rollbot.choose_method(incident.id, "neon_branch", "alice")
        assert "\n" not in str(refused.value) and API_KEY not in str(refused.value)
    finally:
        rollbot.store.dispose()


def test_a_restore_neon_refuses_fails_the_step_and_leaves_the_branch_as_it_was(
    neon_setup: NeonSetup, bot: Rollbot
) -> None:
    server = neon_setup.server
    restore_to = datetime.now(UTC)
    neon_setup.apply_problematic()
    server.fail_next("POST", r"/restore$", 400, message="branch restore is not allowed here")
    incident_id = approved(
        bot, "production", ["data_corruption"], "pitr", restore_to=restore_to.isoformat()
    )
    failed = Executor(bot).run_incident(incident_id)
    assert failed.state == "failed"
    error = steps(bot, incident_id)[0].error or ""
    assert "branch restore is not allowed here (HTTP 400" in error
    assert tables(neon_setup.main_url())  # nothing changed
    assert [b.name for b in server.branches()] == ["main"]
    bot.choose_method(incident_id, "pitr", "alice", {"restore_to": restore_to.isoformat()})
    assert bot.get(incident_id).state == "method_chosen"  # another try is possible


def test_pitr_into_a_new_branch_leaves_the_branch_and_repoints_the_app(
    neon_setup: NeonSetup, tmp_path: Path
) -> None:
    server = neon_setup.server
    received = tmp_path / "new-url"
    repoint = f'printf %s "$ROLLBOT_NEW_DATABASE_URL" > {received}'
    text = neon_setup.config.read_text().replace(
        "[environments.production.neon]\n",
        f"[environments.production.neon]\nrepoint_command = '{repoint}'\n",
    )
    neon_setup.config.write_text(text)
    from handlers.runtime import load_config

    bot = Rollbot.open(load_config(neon_setup.config))
    try:
        restore_to = datetime.now(UTC)
        neon_setup.apply_problematic()
        incident_id = approved(
            bot,
            "production",
            ["data_corruption"],
            "pitr",
            restore_to=restore_to.isoformat(),
            into_new=True,
        )
        done = Executor(bot).run_incident(incident_id)
        assert done.state == "verifying", [s.error for s in done.steps]
        restore, _repoint, verify = steps(bot, incident_id)
    finally:
        bot.store.dispose()
    (created,) = [b for b in server.branches() if b.name.startswith("restored-")]
    assert created.name == restore.params["new_name"]
    assert tables(server.branch_url(created.id)) == set()  # as it was before the migration
    assert tables(neon_setup.main_url())  # the branch itself left as it was
    assert received.read_text() == server.branch_url(created.id)  # the app gets the new URL
    assert verify.result["branch_id"] == created.id and verify.result["head"] == BEFORE_HEAD
    assert not [r for r in server.requests if r.path.endswith("/restore")]
    server.assert_no_violations()


def test_retention_keeps_the_newest_pre_migration_branch_and_other_branches(
    neon_setup: NeonSetup,
) -> None:
    from providers.neon.access import client_for
    from providers.neon.premigrate import prune_pre_migration_branches

    server = neon_setup.server
    main_branch = server.default_branch()
    made = [server.add_branch(f"pre-migrate-000{i}-x", parent_id=main_branch.id) for i in (1, 2, 3)]
    other = server.add_branch("feature-x", parent_id=main_branch.id)
    env = neon_setup.settings.environment("staging")
    with client_for(env) as client:
        parent = client.get_branch(main_branch.id)
        deleted = prune_pre_migration_branches(client, parent, timedelta(0))
    assert deleted == [made[1].name, made[0].name]
    assert {b.name for b in server.branches()} == {"main", made[2].name, other.name}
