"""Slack: staging on Neon, the runbook's fast path: Neon branch rollback, from the card.

rollbot is served for real (its worker too) against the fake Slack and the local Neon
API server; the staging environment is a branch of that server's project.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from handlers.cli import main
from tests.neon_fixtures import API_KEY, BEFORE_HEAD, NeonSetup
from tests.slack.conftest import BOB, REQUESTER, running_fake_slack
from tests.slack.serving import EMITTED, Served, served_env, write_slack_config

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NEON_STAGING = """[environments.staging]
tier = "staging"
provider = "neon"
database_url_env = "ROLLBOT_SLACK_STAGING_URL"
migrations_dir = "{migrations}"

[environments.staging.neon]
project_id = "{project}"
api_url = "{api_url}"
api_key_env = "NEON_TEST_API_KEY"
poll_seconds = 0.05

"""


def neon_slack_config(folder: Path, neon_setup: NeonSetup) -> Path:
    """The Slack tests' config with its staging environment on the local Neon server."""
    path = write_slack_config(folder)
    server = neon_setup.server
    staging = NEON_STAGING.format(
        migrations=neon_setup.migrations, project=server.project_id, api_url=server.url
    )
    text = re.sub(
        r"\[environments\.staging\]\n.*?\n\n", staging, path.read_text(), count=1, flags=re.S
    )
    path.write_text(text)
    return path


def test_staging_neon_branch_rollback_from_the_card(
    neon_setup: NeonSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = neon_setup.server
    old_default = server.default_branch()
    config = neon_slack_config(tmp_path, neon_setup)
    monkeypatch.setenv("ROLLBOT_SLACK_STAGING_URL", neon_setup.main_url())
    assert main(["--config", str(config), "migrate", "--env", "staging"]) == 0
    (pre,) = [b for b in server.branches() if b.name.startswith("pre-migrate-")]

    with running_fake_slack() as fake:
        env = served_env(fake, neon_setup.main_url(), NEON_TEST_API_KEY=API_KEY)
        served = _http(Served([], env, tmp_path, fake))
        EMITTED.append(served)
        served.start()
        try:
            d = served.driver()
            card = d.open_card(REQUESTER, "staging orders broke after 0003")
            d.wait_card(card, lambda t: "rb_choose:neon_branch" in t, "the Neon branch choice")
            d.click(REQUESTER, card, "rb_choose:neon_branch")
            text = d.wait_state(card, "method_chosen")
            assert pre.name in text  # the plan names the branch it goes back to
            d.click(REQUESTER, card, "rb_request_approval")
            d.wait_state(card, "awaiting_approval")
            d.click(BOB, card, "rb_approve")
            d.wait_card(card, lambda t: "rb_run:" in t, "run button")
            d.click(REQUESTER, card, "rb_run")
            # No repoint command: a person points the app at the branch and clicks Done.
            text = d.wait_card(card, lambda t: "rb_step:done" in t, "the Done button")
            assert "set DATABASE_URL to postgresql://" in text and "***" in text
            d.click(REQUESTER, card, "rb_step:done")
            text = d.wait_card(card, lambda t: "· verifying" in t or "· failed" in t, "the end")
            assert "· verifying" in text, text
            steps = sorted(d.bot.get(card.incident_id).steps, key=lambda s: s.seq)
        finally:
            served.stop()

    assert server.default_branch().id == pre.id  # the pre-migration branch is the default
    assert old_default.id != pre.id
    assert steps[1].kind == "deploy.repoint" and steps[1].result["done_by"] == REQUESTER
    verify = steps[-1]
    assert verify.kind == "neon.verify" and verify.result["branch_id"] == pre.id
    assert verify.result["head"] == BEFORE_HEAD  # connected to that branch: its head
    assert API_KEY not in (tmp_path / "audit.log").read_text()
    assert all(API_KEY not in str(call.args) for call in fake.calls)
    server.assert_no_violations()


def _http(served: Served) -> Served:
    """An HTTP serve on a free port (``serve`` in tests.slack.serving writes its own config)."""
    from providers.postgres.cluster import free_port

    port = free_port()
    served.args = ["serve", "--http", "--host", "127.0.0.1", "--port", str(port)]
    served.port = port
    return served
