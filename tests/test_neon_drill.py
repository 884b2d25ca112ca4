"""``rollbot drill --env NAME`` on a Neon environment, against the local Neon API server.

Acceptance: the drill practises both Neon methods on a throwaway branch of the
environment's branch and leaves no branch behind, also when a step fails; the
environment's own branch is never changed and the default branch never switched.

The local server cannot see writes, so its history only holds the points a test
checkpoints: the drill's one hook for that (``note_write``, a no-op on Neon, which records
every write) checkpoints the branch the drill just wrote to.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import handlers.drill.neon as neon_drill
from bot.config import EnvironmentConfig, Settings
from bot.errors import RollbotError
from handlers.cli import main
from handlers.drill.neon import URL_ENV, run_neon_drill
from handlers.drill.neon_support import PROBE
from tests.neon_api import NeonApiServer
from tests.neon_fixtures import BEFORE_HEAD, NeonSetup

pytest_plugins = ["tests.neon_fixtures"]
pytestmark = pytest.mark.postgres

METHODS = ["neon_branch", "pitr"]


@pytest.fixture
def history(neon_setup: NeonSetup, monkeypatch: pytest.MonkeyPatch) -> NeonApiServer:
    """The server, told of each drill write (its history is only what is checkpointed)."""
    server = neon_setup.server
    monkeypatch.setattr(neon_drill, "note_write", lambda branch_id: server.checkpoint(branch_id))
    return server


def fingerprint(url: str) -> dict[str, object]:
    """What the environment's own branch holds: tables, their rows, the migrations rows."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('public', 'drizzle') ORDER BY 1, 2"
        ).fetchall()
        rows = {
            f"{schema}.{table}": conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            ).fetchone()[0]
            for schema, table in tables
        }
        head = conn.execute(
            "SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id"
        ).fetchall()
    return {"rows": rows, "migrations": head}


def branch_ids(server: NeonApiServer) -> dict[str, str]:
    return {b.id: b.name for b in server.branches()}


def mutations_of(server: NeonApiServer, branch_id: str) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in server.requests
        if r.method != "GET" and f"/branches/{branch_id}" in r.path
    ]


def test_the_drill_practises_both_methods_on_a_throwaway_branch_and_leaves_none(
    neon_setup: NeonSetup, history: NeonApiServer, tmp_path: Path
) -> None:
    server = history
    main_branch = server.default_branch()
    before = branch_ids(server)
    data = fingerprint(server.branch_url(main_branch.id))
    lines: list[str] = []

    result = run_neon_drill(neon_setup.settings, "staging", tmp_path / "out", lines.append)

    problems = [p for o in result.outcomes for p in o.problems] + result.leftovers
    assert result.ok, problems
    assert [o.method_id for o in result.outcomes] == METHODS
    rollback, pitr = result.outcomes
    assert rollback.tier == "staging" and pitr.tier == "production"  # PITR: production only
    for outcome in result.outcomes:
        assert outcome.verified and outcome.incident_state == "resolved"
        assert outcome.incident_steps >= 2 and outcome.seconds > 0
        assert all(s.ok and s.seconds >= 0 for s in outcome.steps)
    assert any(f"pre-migration head {BEFORE_HEAD}" in c for c in rollback.checks)
    assert any(f"{PROBE}" in c and "absent" in c for c in rollback.checks)
    assert any("written after the restore point are gone" in c for c in pitr.checks)

    created = [
        r.body["branch"]
        for r in server.requests
        if r.method == "POST" and r.path.endswith("/branches") and r.status == 201
    ]
    throwaway = created[0]
    assert throwaway["name"].startswith("rollbot-drill-")
    assert throwaway["parent_id"] == main_branch.id
    assert len(created) == 2  # the throwaway and its pre-migration branch, nothing else
    restores = [r for r in server.requests if r.path.endswith("/restore")]
    assert len(restores) == 1 and f"/branches/{main_branch.id}/" not in restores[0].path

    assert branch_ids(server) == before  # every branch the drill made is gone
    after = server.default_branch()
    assert after.id == main_branch.id  # still the default, never switched
    assert not [r for r in server.requests if r.path.endswith("/set_as_default")]
    assert mutations_of(server, main_branch.id) == []
    assert fingerprint(server.branch_url(main_branch.id)) == data
    assert URL_ENV not in os.environ
    assert any("deleted branch" in line for line in lines)
    server.assert_no_violations()


def test_an_environment_without_a_migrations_folder_is_drilled_with_the_drills_own(
    neon_setup: NeonSetup, history: NeonApiServer, tmp_path: Path
) -> None:
    server = history
    before = branch_ids(server)
    data = fingerprint(server.branch_url(server.default_branch().id))
    staging = neon_setup.settings.environment("staging").model_copy(update={"migrations_dir": None})
    settings = neon_setup.settings.model_copy(update={"environments": {"staging": staging}})

    result = run_neon_drill(settings, "staging", tmp_path / "out", lambda _l: None)

    assert result.ok, [p for o in result.outcomes for p in o.problems] + result.leftovers
    rollback, pitr = result.outcomes
    assert any("pre-migration head 0000_rollbot_drill_baseline" in c for c in rollback.checks)
    assert any("0001_rollbot_drill" in c for c in pitr.checks)
    assert branch_ids(server) == before
    assert fingerprint(server.branch_url(server.default_branch().id)) == data
    server.assert_no_violations()


def test_a_failing_restore_is_reported_and_still_no_branch_is_left(
    neon_setup: NeonSetup, history: NeonApiServer, tmp_path: Path
) -> None:
    server = history
    main_branch = server.default_branch()
    before = branch_ids(server)
    server.fail_next("POST", r"/restore$", 500, message="boom")

    result = run_neon_drill(neon_setup.settings, "staging", tmp_path / "out", lambda _l: None)

    assert not result.ok
    rollback, pitr = result.outcomes
    assert rollback.verified
    assert not pitr.verified
    assert any("boom" in p or "500" in p for p in pitr.problems), pitr.problems
    assert any(not s.ok for s in pitr.steps)  # the failed step is in the timings
    assert result.leftovers == []
    assert branch_ids(server) == before
    assert server.default_branch().id == main_branch.id
    assert mutations_of(server, main_branch.id) == []
    server.assert_no_violations()


def test_a_branch_that_cannot_be_deleted_fails_the_drill(
    neon_setup: NeonSetup, history: NeonApiServer, tmp_path: Path
) -> None:
    server = history
    before = branch_ids(server)
    server.fail_next("DELETE", r"/branches/", 400, message="no deleting today", times=50)

    result = run_neon_drill(neon_setup.settings, "staging", tmp_path / "out", lambda _l: None)

    assert all(o.verified for o in result.outcomes)
    assert not result.ok
    left = {i: n for i, n in branch_ids(server).items() if i not in before}
    assert left and len(result.leftovers) == len(left)
    for branch_id, name in left.items():
        assert any(branch_id in p and name in p for p in result.leftovers)
    assert any("no deleting today" in p for p in result.leftovers)
    server.assert_no_violations()


def test_drill_env_through_the_cli_writes_a_report(
    neon_setup: NeonSetup, history: NeonApiServer, tmp_path: Path
) -> None:
    before = branch_ids(history)
    out = tmp_path / "drill"

    code = main(
        ["--config", str(neon_setup.config), "drill", "--env", "staging", "--output", str(out)]
    )

    assert code == 0
    reports = sorted(out.glob("drill-report-*.md"))
    assert len(reports) == 1
    text = reports[0].read_text()
    assert "Neon branch rollback" in text and "Neon point-in-time restore" in text
    assert "2 of 2 methods verified" in text
    assert list(out.glob("drill-report-*.html"))
    assert branch_ids(history) == before
    history.assert_no_violations()


def test_a_non_neon_environment_is_refused(tmp_path: Path) -> None:
    env = EnvironmentConfig(name="local", tier="staging", database_url_env="LOCAL_URL")
    settings = Settings(environments={"local": env})
    with pytest.raises(RollbotError, match="provider 'postgres'"):
        run_neon_drill(settings, "local", tmp_path)


def test_local_only_flags_are_refused_with_env(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "--env", "staging", "--size", "3MB"]) == 2
    assert "only for the local drill" in capsys.readouterr().err
