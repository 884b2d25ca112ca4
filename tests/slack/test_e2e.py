"""End to end over real HTTP and over Socket Mode: restore from snapshot on a real PostgreSQL.

/rollback -> production -> data corruption -> restore -> approval by a second user
-> run -> verify -> checklists -> root cause -> resolve, every step through the
buttons the app rendered, with the fake Slack recording what people would see.
"""

from __future__ import annotations

import psycopg
import pytest

from bot.config import load_settings
from bot.runbook import RUNBOOK
from providers.postgres.snapshot import create_snapshot
from providers.postgres.steps import storage_of
from tests.slack.conftest import ALICE, BOB, REQUESTER
from tests.slack.driver import SlackDriver, blocks_text

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(params=["http", "socket"])
def driver(request: pytest.FixtureRequest) -> SlackDriver:
    return request.getfixturevalue(f"{request.param}_driver")


def _seed_and_snapshot(d: SlackDriver, url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS accounts")
        conn.execute("CREATE TABLE accounts (id int primary key, balance int not null)")
        conn.execute("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 500) g")
    env = load_settings(d.config).environment("production")
    create_snapshot(url, storage_of(env), migrations_table=env.migrations_table)
    with psycopg.connect(url, autocommit=True) as conn:  # the bad migration corrupts data
        conn.execute("UPDATE accounts SET balance = -1 WHERE id % 2 = 0")


def _balances(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*), min(balance) FROM accounts").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def test_restore_from_snapshot_end_to_end(driver: SlackDriver, prod_db: str) -> None:
    d = driver
    _seed_and_snapshot(d, prod_db)
    assert _balances(prod_db) == (500, -1)
    transport = type(d.transport).__name__
    card = d.open_card(REQUESTER, f"production balances corrupted by 0042 via {transport}")
    d.fake.wait_for(
        lambda f: f.find(
            "chat.postMessage",
            lambda a: a["channel"] == "#devops-team" and f"INC-{card.incident_id}:" in a["text"],
        ),
        what="devops notice",
    )

    d.wait_card(card, lambda t: "Data corruption?" in t, "production question")
    d.click(REQUESTER, card, "rb_answer:data_corruption")
    text = d.wait_card(card, lambda t: "rb_choose:pitr" in t, "recommendation")
    assert "Recommended" in text and "Restore snapshot" in text  # the plan preview
    assert "Alternative" in text and "rb_choose:pg_dump_restore" in text
    assert "not available here" in text  # Neon branch in a plain PostgreSQL environment

    d.click(REQUESTER, card, "rb_choose:pitr")
    d.wait_state(card, "method_chosen")
    d.click(REQUESTER, card, "rb_request_approval")
    d.wait_state(card, "awaiting_approval")
    d.click(BOB, card, "rb_approve")  # BOB approves through the user group
    d.wait_card(card, lambda t: "rb_run:" in t, "run button")
    d.click(REQUESTER, card, "rb_run")
    text = d.wait_card(card, lambda t: "· verifying" in t or "· failed" in t, "verifying")
    assert "· verifying" in text, text
    assert _balances(prod_db) == (500, 100)  # data restored from the snapshot
    progress = [
        c
        for c in d.fake.calls_to("chat.update")
        if "step 2" in c.args.get("text", "") and "database verified" in c.args.get("text", "")
    ]
    assert progress, "the verification result is posted in the thread"

    before = [i.id for i in RUNBOOK.before_checklist]
    after = [i.id for i in RUNBOOK.after_checklist]
    ticks = d.bot.ticks(card.incident_id)  # what rollbot did itself is ticked, with evidence
    assert "verified snapshot" in (ticks["before.snapshot"].evidence or "")
    assert ticks["after.verify_database"].actor == "rollbot"
    assert "rollbot" in blocks_text(d.blocks(card)) and "verified snapshot" in str(d.blocks(card))

    def all_ticked(ids: list[str]) -> bool:
        now = d.bot.ticks(card.incident_id)
        return all(now.get(i) is not None and now[i].ticked for i in ids)

    d.tick(ALICE, card, "before", before)
    d.fake.wait_for(lambda f: all_ticked(before), what="before ticks")
    d.tick(ALICE, card, "after", after)
    d.fake.wait_for(lambda f: all_ticked(after), what="after ticks")
    ticks = d.bot.ticks(card.incident_id)
    assert all(t.ticked and t.actor in (ALICE, "rollbot") for t in ticks.values())
    assert ticks["before.stakeholders"].actor == ALICE

    before = len(d.fake.calls_to("views.open"))
    d.click(REQUESTER, card, "rb_root_cause")
    opened = d.fake.wait_for(lambda f: f.calls_to("views.open")[before:], what="modal")
    view = opened[-1].args["view"]
    submission = {
        "type": "view_submission",
        "team": {"id": "T0TEST"},
        "user": {"id": REQUESTER},
        "api_app_id": "A0ROLLBOT",
        "view": {
            **view,
            "id": f"V{card.incident_id}",
            "hash": f"h{card.incident_id}",
            "state": {
                "values": {
                    "root_cause": {
                        "value": {"type": "plain_text_input", "value": "0042 rewrote balances"}
                    },
                    "notes": {"value": {"type": "plain_text_input", "value": "add a data check"}},
                }
            },
        },
    }
    assert d.transport.interact(submission).status == 200
    d.wait_card(card, lambda t: "0042 rewrote balances" in t, "root cause")

    d.click(ALICE, card, "rb_resolve")
    d.wait_state(card, "resolved")
    incident = d.bot.get(card.incident_id)
    assert incident.state == "resolved" and incident.root_cause == "0042 rewrote balances"
    d.fake.wait_for(
        lambda f: f.find(
            "chat.postMessage", lambda a: f"Timeline of INC-{card.incident_id}" in a.get("text", "")
        ),
        what="timeline",
    )
    kinds = [e.kind for e in d.audit(card.incident_id)]
    assert kinds.count("approval") == 1 and "checklist" in kinds and "note" in kinds
    if transport != "HttpTransport":
        return
    # Undo: its own incident and thread, with its own plan (nothing runs unapproved).
    kept = d.bot.undoable(incident)
    assert kept and kept in blocks_text(d.blocks(card))
    d.click(REQUESTER, card, "rb_undo")
    undo = d.wait_card_for(f"Undo the restore of INC-{card.incident_id}")
    text = d.wait_state(undo, "method_chosen")
    assert kept in text and "rb_request_approval" in text
    assert _balances(prod_db) == (500, 100)
    d.click(REQUESTER, undo, "rb_cancel")
    d.wait_state(undo, "cancelled")
