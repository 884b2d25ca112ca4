"""Slack: production on RDS, data corruption, point-in-time restore into a new instance.

rollbot is served for real (its worker too) against the fake Slack and moto's server (started
by the test). The restored instance's endpoint is a moto hostname, so the environment's
``connect_host``/``connect_port`` point rollbot's own connections at a database on the test
cluster that plays the restored instance, at the head from before the bad migration.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from tests.neon_fixtures import BEFORE_HEAD, EXAMPLE
from tests.rds_support import (  # noqa: F401  (fixtures)
    AWS_ENV,
    SECRET_KEY,
    MotoRds,
    isolated_aws,
    moto_rds,
    moto_server,
)
from tests.slack.conftest import BOB, REQUESTER, running_fake_slack
from tests.slack.driver import Card, SlackDriver
from tests.slack.serving import EMITTED, Served, served_env, write_slack_config
from tests.slack.signing import block_action_payload
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
SOURCE = "orders-prod"

RDS_PRODUCTION = """[environments.production]
tier = "production"
provider = "rds"
database_url_env = "ROLLBOT_SLACK_PROD_URL"
migrations_dir = "{migrations}"

[environments.production.rds]
instance_id = "{source}"
endpoint_url = "{endpoint}"
poll_seconds = 0.05
max_wait_minutes = 5
connect_host = "127.0.0.1"
connect_port = {port}

"""


def rds_slack_config(folder: Path, moto: MotoRds, url: str) -> Path:
    """The Slack tests' config with production on RDS (its app_rollback command kept)."""
    import shutil

    migrations = folder / "migrations"
    shutil.copytree(EXAMPLE, migrations)
    path = write_slack_config(folder)
    production = RDS_PRODUCTION.format(
        migrations=migrations, source=SOURCE, endpoint=moto.url, port=urlsplit(url).port
    )
    text = re.sub(
        r"\[environments\.production\]\n.*?\n\n", production, path.read_text(), count=1, flags=re.S
    )
    path.write_text(text)
    apply_migrations(url, read_journal(migrations), upto=2)
    return path


def pick_time(d: SlackDriver, card: Card, moment: int) -> None:
    element, block_id = d.element(card, "rb_source:time")
    payload = block_action_payload(
        REQUESTER,
        {
            "type": "datetimepicker",
            "action_id": element["action_id"],
            "block_id": block_id,
            "selected_date_time": moment,
        },
        card.channel,
        card.ts,
        card.thread_ts,
    )
    assert d.transport.interact(payload).status == 200


def thread(fake: object, card: Card) -> str:
    messages = fake.messages.values()  # type: ignore[attr-defined]
    return "\n".join(str(m["text"]) for m in messages if m.get("thread_ts") == card.thread_ts)


def test_production_data_corruption_rds_pitr_from_the_card(
    moto_rds: MotoRds,  # noqa: F811
    new_database: Callable[[str], str],
    tmp_path: Path,
) -> None:
    url = new_database("slack_rds_restored")
    created = moto_rds.make_instance(SOURCE)
    rds_slack_config(tmp_path, moto_rds, url)
    moment = math.ceil(created.timestamp())  # the picker takes whole seconds
    wait_until(lambda: datetime.now(UTC).timestamp() > moment, "the restore time to pass")

    with running_fake_slack() as fake:
        env = served_env(fake, url, **AWS_ENV, **isolated_aws(tmp_path))
        served = _http(Served([], env, tmp_path, fake))
        EMITTED.append(served)
        served.start()
        try:
            d = served.driver()
            card = d.open_card(REQUESTER, "production orders rows corrupted")
            d.wait_card(card, lambda t: "rb_answer:data_corruption" in t, "the question")
            d.click(REQUESTER, card, "rb_answer:data_corruption")
            d.wait_card(card, lambda t: "rb_choose:pitr" in t, "the PITR choice")
            d.click(REQUESTER, card, "rb_choose:pitr")
            text = d.wait_state(card, "method_chosen")
            assert "NO RESTORE POINT CHOSEN" in text  # nothing chosen: no silent "latest"
            pick_time(d, card, moment)
            wait_until(
                lambda: d.bot.get(card.incident_id).steps[0].params.get("before"),
                "the plan drawn up with the picked time",
            )
            d.wait_card(card, lambda t: "rb_request_approval" in t, "request approval")
            d.click(REQUESTER, card, "rb_request_approval")
            d.wait_state(card, "awaiting_approval")
            d.click(BOB, card, "rb_approve")
            d.wait_card(card, lambda t: "rb_run:" in t, "run button")
            d.click(REQUESTER, card, "rb_run")
            d.wait_card(card, lambda t: "rb_step:done" in t or "· failed" in t, "the repoint")
            d.click(REQUESTER, card, "rb_step:done")
            text = d.wait_card(card, lambda t: "· verifying" in t or "· failed" in t, "the end")
            assert "· verifying" in text, text
            steps = sorted(d.bot.get(card.incident_id).steps, key=lambda s: s.seq)
            posted = thread(fake, card)
        finally:
            served.stop()

    restore, repoint, verify = steps
    assert [s.kind for s in steps] == ["rds.pitr", "deploy.repoint", "rds.verify"]
    new_id = restore.params["new_id"]
    assert [i for i in moto_rds.instance_ids() if "-restored-" in i] == [new_id]
    new = moto_rds.instance(new_id)
    endpoint = f"{new['Endpoint']['Address']}:{new['Endpoint']['Port']}"
    assert endpoint in posted  # the new endpoint, in the thread
    assert restore.params["before"] == datetime.fromtimestamp(moment, UTC).isoformat()
    assert repoint.status == "succeeded" and repoint.result["done_by"] == REQUESTER
    assert verify.result["instance_id"] == new_id and verify.result["head"] == BEFORE_HEAD
    assert moto_rds.actions("RestoreDBInstanceToPointInTime") == ["RestoreDBInstanceToPointInTime"]
    password = urlsplit(url).password
    assert password, "the test database should have a password to leak"
    emitted = [
        (tmp_path / "audit.log").read_text(),
        *(log.read_text() for log in served.logs),
        *served.state_texts(),
        *(str(call.args) for call in fake.calls),
    ]
    for text in emitted:
        assert SECRET_KEY not in text and password not in text


def _http(served: Served) -> Served:
    """An HTTP serve on a free port (``serve`` in tests.slack.serving writes its own config)."""
    from providers.postgres.cluster import free_port

    port = free_port()
    served.args = ["serve", "--http", "--host", "127.0.0.1", "--port", str(port)]
    served.port = port
    return served
