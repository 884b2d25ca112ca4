"""Crashes with real processes: what was acknowledged is done once after a restart, and a
restore killed mid-way is announced in its thread with its leftovers gone."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from bot.config import load_settings
from bot.models import InboxItem
from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.snapshot import create_snapshot
from providers.postgres.steps import storage_of
from tests.slack.conftest import ALICE, BOB, REQUESTER, running_fake_slack
from tests.slack.driver import Card, SlackDriver
from tests.slack.fake_slack import FakeSlack
from tests.slack.serving import Served, serve
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with running_fake_slack() as fake:
        yield fake


def _inbox(d: SlackDriver) -> list[tuple[str, str]]:
    with d.bot.store.inbox_side.read() as s:
        return [(i.action, i.status) for i in s.query(InboxItem).order_by(InboxItem.id)]


def _to_approval(d: SlackDriver, text: str, answer: str, method: str) -> Card:
    card = d.open_card(REQUESTER, text)
    d.wait_card(card, lambda t: f"rb_answer:{answer}" in t, "question")
    d.click(REQUESTER, card, f"rb_answer:{answer}")
    d.wait_card(card, lambda t: f"rb_choose:{method}" in t, "recommendation")
    d.click(REQUESTER, card, f"rb_choose:{method}")
    d.wait_state(card, "method_chosen")
    d.click(REQUESTER, card, "rb_request_approval")
    d.wait_state(card, "awaiting_approval")
    return card


def test_acknowledged_clicks_take_effect_once_after_sigkill(
    fake: FakeSlack,
    new_database: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """Requests acknowledged while no worker ran, then kill -9: done once after the restart."""
    served = serve(fake, new_database("crash_acks"), tmp_path)
    try:
        d = served.driver()
        card = _to_approval(d, "production acked-then-killed", "app_broken", "app_rollback")
        served.stop()
        served.args.append("--no-worker")  # acknowledge only: the requests wait in the inbox
        served.start()
        d = served.driver()
        d.click(ALICE, card, "rb_approve")
        d.tick(REQUESTER, card, "before", ["before.snapshot", "before.notify_team"])
        opened = d.rollback(BOB, "production opened-while-no-worker")
        assert opened.status == 200 and "Opening an incident" in opened.json()["text"]
        assert sorted(a for a, st in _inbox(d) if st == "pending") == [
            "approve",
            "rollback",
            "tick",
        ]
        served.kill()  # kill -9 right after the acks

        served.args.remove("--no-worker")
        served.start()
        d = served.driver()
        d.wait_card(card, lambda t: "rb_run:" in t, "the approval, taken after the restart")
        d.wait_card_for("opened-while-no-worker")
        wait_until(
            lambda: all(st == "done" for _, st in _inbox(d)), "the inbox to drain", timeout=60
        )
        incident = d.bot.get(card.incident_id)
        assert [a.approver for a in incident.approvals] == [ALICE]
        ticks = d.bot.ticks(card.incident_id)
        assert {"before.snapshot", "before.notify_team"} <= {
            t for t, k in ticks.items() if k.ticked
        }
        assert ticks["before.snapshot"].actor == REQUESTER  # notify_team: rollbot did it already
        by_requester = [
            e.message
            for e in d.audit(card.incident_id)
            if e.kind == "checklist" and e.actor == REQUESTER
        ]
        assert by_requester and len(by_requester) == len(set(by_requester))  # each once
        events = [e.message for e in d.audit(card.incident_id)]
        assert sum("approved by U0ALICE" in m for m in events) == 1
        opened_once = [
            i for i in d.bot.open_incidents() if i.description == "opened-while-no-worker"
        ]
        assert len(opened_once) == 1
    finally:
        served.stop()


def test_a_worker_killed_while_handling_a_click_does_it_once_after_restart(
    fake: FakeSlack,
    new_database: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """The worker dies after the core committed the click but before it finished the row:
    the row is claimed again after the restart and the click still acts once."""
    served = serve(fake, new_database("crash_claimed"), tmp_path)
    try:
        d = served.driver()
        card = _to_approval(d, "production killed-while-handling", "app_broken", "app_rollback")
        slow = fake.hold("chat.update")  # the card refresh after the approval hangs
        d.click(ALICE, card, "rb_approve")
        wait_until(
            lambda: d.bot.get(card.incident_id).approvals, "the approval to commit", timeout=30
        )
        assert ("approve", "claimed") in _inbox(d)
        served.kill()
        slow.set()
        del fake.held["chat.update"]

        served.start()
        d = served.driver()
        wait_until(
            lambda: all(st == "done" for _, st in _inbox(d)), "the claimed row, again", timeout=90
        )
        d.wait_card(card, lambda t: "rb_run:" in t, "the card, refreshed after the restart")
        assert len(d.bot.get(card.incident_id).approvals) == 1
        events = [e.message for e in d.audit(card.incident_id)]
        assert sum("approved by U0ALICE" in m for m in events) == 1
    finally:
        served.stop()


def _seed(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id bigint PRIMARY KEY, amount int, note text)")
        conn.execute(
            "INSERT INTO ledger SELECT g, g %% 97, repeat(md5(g::text), 6) "
            "FROM generate_series(1, %s) g",
            (rows,),
        )


def _restoring(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", ("%\\_restoring\\_%",)
        ).fetchall()
    return [r[0] for r in rows]


def _start_restore(served: Served, url: str) -> tuple[SlackDriver, Card]:
    d = served.driver()
    env = load_settings(d.config).environment("production")
    create_snapshot(url, storage_of(env), migrations_table=env.migrations_table)
    card = _to_approval(d, "production killed-mid-restore", "data_corruption", "pitr")
    d.click(BOB, card, "rb_approve")
    d.wait_card(card, lambda t: "rb_run:" in t, "run button")
    d.click(REQUESTER, card, "rb_run")
    return d, card


def test_kill_mid_restore_is_announced_with_choices_and_leaves_nothing(
    fake: FakeSlack,
    pg_cluster: ThrowawayCluster,
    new_database: Callable[[str], str],
    tmp_path: Path,
) -> None:
    url = new_database("crash_restore")
    _seed(url, 400_000)
    served = serve(fake, url, tmp_path)
    try:
        d, card = _start_restore(served, url)
        wait_until(
            lambda: _restoring(pg_cluster.url()), "the restore to create its database", timeout=120
        )
        served.kill()  # mid-restore: pg_restore is loading into <db>_restoring_<ts>

        served.start()
        d = served.driver()
        notice = d.fake.wait_for(
            lambda f: f.find("chat.postMessage", lambda a: "was interrupted" in a.get("text", "")),
            timeout=60,
            what="the interruption notice",
        )[-1]
        assert notice.args["thread_ts"] == card.thread_ts
        text = json.dumps(notice.args["blocks"])
        for choice in ("rb_step:retry", "rb_step:skip", "rb_step:abandon"):
            assert choice in text
        assert "removed the unfinished database" in text and "fresh approval" in text
        assert _restoring(pg_cluster.url()) == []
        d.wait_card(card, lambda t: "rb_step:retry" in t and "was interrupted" in t, "card")

        # Retrying a destructive step is a new decision: it needs a fresh approval.
        d.click(REQUESTER, card, "rb_step:retry")
        d.wait_state(card, "awaiting_approval")
        assert d.bot.approval_status(d.bot.get(card.incident_id)) == (0, 1)
        d.click(REQUESTER, card, "rb_approve")
        d.wait_ephemeral(REQUESTER, "may not approve")  # never the requester in production
        d.click(BOB, card, "rb_approve")
        d.wait_card(card, lambda t: "rb_run:" in t, "run button for the re-run")
        d.click(REQUESTER, card, "rb_run")
        d.wait_card(card, lambda t: "· verifying" in t or "· failed" in t, "the re-run")
        assert d.bot.get(card.incident_id).state == "verifying"
        assert _restoring(pg_cluster.url()) == []
    finally:
        served.stop()
