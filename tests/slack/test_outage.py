"""The state database (PostgreSQL) stopped for 10 s under load: every request was either
acknowledged as recorded and then done after the recovery, or answered "not recorded"."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.models import InboxItem, Incident
from providers.postgres.cluster import ThrowawayCluster
from tests.slack.conftest import REQUESTER, running_fake_slack
from tests.slack.driver import SlackDriver
from tests.slack.serving import serve
from tests.slack.signing import Reply
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
OUTAGE_SECONDS = 10


class Pausable:
    """Stop and start a throwaway cluster in place (same data directory, same port)."""

    def __init__(self, cluster: ThrowawayCluster) -> None:
        self.cluster = cluster
        self.pg_ctl = str(cluster.bindir / "pg_ctl")

    def _ctl(self, *args: str) -> None:
        argv = [self.pg_ctl, "-D", str(self.cluster.datadir), *args]
        subprocess.run(self.cluster._as_server_user(argv), check=True, capture_output=True)

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        opts = (
            f"-p {self.cluster.port} -h 127.0.0.1 -k {self.cluster.root / 'sock'} "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        log = str(self.cluster.root / "server.log")
        self._ctl("-o", opts, "-l", log, "-w", "-t", "60", "start")


@pytest.fixture
def state_cluster() -> Iterator[ThrowawayCluster]:
    with ThrowawayCluster() as cluster:
        yield cluster


def _send_for(d: SlackDriver, stop: threading.Event, sent: dict[str, Reply]) -> None:
    """Slash commands at a steady pace, each with its own marker, until ``stop``."""
    n = 0
    while not stop.is_set():
        marker = f"outage-{n:04d}"
        sent[marker] = d.rollback(REQUESTER, f"production {marker}")
        n += 1
        stop.wait(0.1)


def test_state_database_outage_loses_nothing_acknowledged(
    state_cluster: ThrowawayCluster, new_database: Callable[[str], str], tmp_path: Path
) -> None:
    state_url = state_cluster.create_database("rollbot_state")
    with running_fake_slack() as fake:
        served = serve(
            fake,
            new_database("outage_prod"),
            tmp_path,
            sqlite=False,
            extra_env={"ROLLBOT_DATABASE_URL": state_url},
        )
        try:
            d = served.driver()
            sent: dict[str, Reply] = {}
            stop = threading.Event()
            sender = threading.Thread(target=_send_for, args=(d, stop, sent))
            sender.start()
            try:
                wait_until(lambda: len(sent) >= 20, "load before the outage", timeout=60)
                db = Pausable(state_cluster)
                db.stop()
                time.sleep(OUTAGE_SECONDS)  # the outage itself is the thing being simulated
                db.start()
                up_at = len(sent)
                wait_until(lambda: len(sent) >= up_at + 60, "load after the outage", timeout=90)
            finally:
                stop.set()
                sender.join(30)
            _check_nothing_acknowledged_was_lost(d, sent)
        finally:
            served.stop()


def _check_nothing_acknowledged_was_lost(d: SlackDriver, sent: dict[str, Reply]) -> None:
    texts = {m: (r.json() or {}).get("text", "") for m, r in sent.items()}
    assert all(r.status == 200 for r in sent.values()), {m: r.status for m, r in sent.items()}
    assert max(r.elapsed for r in sent.values()) < 3.0  # Slack's limit, even while it was down
    recorded = {m for m, t in texts.items() if "Opening an incident" in t}
    refused = {m for m, t in texts.items() if "not recorded" in t}
    assert recorded | refused == set(sent), {
        m: t for m, t in texts.items() if m not in recorded | refused
    }
    assert refused, "the outage should have refused some requests at the ack"
    assert set(sorted(sent)[-50:]) <= recorded  # after the outage, requests are recorded again

    def drained() -> bool:
        with d.bot.store.inbox_side.read() as s:
            unfinished = s.scalar(
                select(func.count())
                .select_from(InboxItem)
                .where(InboxItem.status.in_(("pending", "claimed")))
            )
        return unfinished == 0

    wait_until(drained, "the worker to finish what was recorded", timeout=180)
    with d.bot.store.read() as s:
        opened = s.scalars(
            select(Incident.description).where(Incident.description.like("outage-%"))
        ).all()
    assert sorted(opened) == sorted(recorded)  # each recorded once, nothing refused opened
