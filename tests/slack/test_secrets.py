"""No secret leaves: configured secrets and secrets people type never appear in anything the
served apps emitted in this session (every Web API call the fake Slack recorded, the server
and worker logs, the audit trail and audit.log, every text in the state databases)."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import unquote, urlsplit

import pytest

from providers.postgres.cluster import ThrowawayCluster
from tests.neon_fixtures import API_KEY as NEON_API_KEY
from tests.slack.conftest import ALICE, REQUESTER
from tests.slack.driver import SlackDriver
from tests.slack.fake_slack import APP_TOKEN, BOT_TOKEN
from tests.slack.serving import EMITTED, Served
from tests.slack.signing import SIGNING_SECRET

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TYPED = {
    "url password": "Typed-Pa55word-9931",
    "password pair": "hunter2hunter2x",
    "slack token": "xoxb-123456789012-abcdefghijkl",
    "aws key": "AKIAABCDEFGHIJKLMNOP",
    "pagerduty key": "e93facc04764012d7bfb002500d5d1a6",
}


def _typed_text(db_password: str) -> str:
    return (
        f"leaked postgres://app:{TYPED['url password']}@db.internal/app "
        f"password={TYPED['password pair']} {TYPED['slack token']} {TYPED['aws key']} "
        f"routing {TYPED['pagerduty key']} and the db password itself: {db_password}"
    )


@pytest.fixture(params=["http", "socket"])
def driver(request: pytest.FixtureRequest) -> SlackDriver:
    return request.getfixturevalue(f"{request.param}_driver")


def test_typed_secrets_are_masked_from_the_first_message(
    driver: SlackDriver, pg_cluster: ThrowawayCluster
) -> None:
    d = driver
    marker = f"secret-scan-{type(d.transport).__name__}"
    typed = _typed_text(pg_cluster.password)
    assert d.rollback(REQUESTER, f"production {marker} {typed}").status == 200
    card = d.wait_card_for(marker)
    d.fake.wait_for(
        lambda f: f.find(
            "chat.postMessage",
            lambda a: marker in a.get("text", "") and a.get("channel") == "#devops-team",
        ),
        what="devops notice",
    )
    incident = d.bot.get(card.incident_id)
    assert "***" in incident.description and TYPED["url password"] not in incident.description
    d.mention(ALICE, f"rollback staging {marker}-mention {typed}", f"Ev{time.monotonic_ns()}")
    d.wait_card_for(f"{marker}-mention")

    opened = len(d.fake.calls_to("views.open"))
    d.click(REQUESTER, card, "rb_root_cause")
    view = d.fake.wait_for(lambda f: f.calls_to("views.open")[opened:], what="modal")[-1]
    values = {
        "root_cause": {"value": {"type": "plain_text_input", "value": f"root {typed}"}},
        "notes": {"value": {"type": "plain_text_input", "value": f"notes {typed}"}},
    }
    submission = {
        "type": "view_submission",
        "user": {"id": REQUESTER},
        "view": {**view.args["view"], "id": f"V{marker}", "hash": "h", "state": {"values": values}},
    }
    assert d.transport.interact(submission).status == 200
    d.wait_card(card, lambda t: "root ***" in t or "root leaked" in t, "root cause")


def _passwords(served: Served) -> set[str]:
    found = set()
    for value in served.env.values():
        if "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                continue
            if password:
                found |= {password, unquote(password)}
    return found


def _emitted(served: Served) -> dict[str, str]:
    """Everything one served app emitted, by where it came from."""
    out = {
        f"slack call {n} {c.method}": json.dumps(c.args, default=str)
        for n, c in enumerate(served.fake.calls)
    }
    for log in served.logs:
        out[f"log {log.name}"] = log.read_text(errors="replace") if log.exists() else ""
    audit = served.folder / "audit.log"
    out["audit.log"] = audit.read_text() if audit.exists() else ""
    out["state database"] = "\n".join(served.state_texts())
    return out


@pytest.mark.scan_last
def test_no_secret_in_anything_the_served_apps_emitted(pg_cluster: ThrowawayCluster) -> None:
    assert EMITTED, "no served app ran in this session"
    secrets = {
        "bot token": BOT_TOKEN,
        "app token": APP_TOKEN,
        "signing secret": SIGNING_SECRET,
        "database password": pg_cluster.password,
        "Neon API key": NEON_API_KEY,
        **{f"typed {k}": v for k, v in TYPED.items()},
    }
    hits = []
    for served in EMITTED:
        extra = {f"configured password {n}": p for n, p in enumerate(_passwords(served))}
        for where, text in _emitted(served).items():
            for name, secret in {**secrets, **extra}.items():
                if secret and re.search(re.escape(secret), text):
                    hits.append(f"{served.folder.name} / {where}: {name}")
    assert hits == []
