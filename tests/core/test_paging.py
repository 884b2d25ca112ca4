"""The runbook's emergency contacts end to end: the outbox delivered to the local
PagerDuty (HTTPS, every request checked against its spec) and to the devops channel."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, SlackConfig
from bot.executor import Executor
from bot.notify import Notice
from bot.outbox import CLAIM_SECONDS, Deliverer
from bot.service import Rollbot
from handlers.runtime import register_provider_steps
from handlers.slack.notices import DevopsChannel
from providers.pagerduty.notifier import PagerDutyNotifier
from tests.core_fixtures import Clock
from tests.pagerduty_api import PagerDutyApiServer

ONCALL_KEY = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
CTO_KEY = "f9e8d7c6b5a4938271605f4e3d2c1b0a"


class Crash(BaseException):
    """Ends delivery as SIGKILL would: the page went out, the row was never marked sent."""


@dataclass
class CrashOnce:
    """PagerDuty, but the process dies right after the first page it sends."""

    pager: PagerDutyNotifier
    crashed: bool = False

    @property
    def audiences(self) -> tuple[str, ...]:
        return self.pager.audiences

    def deliver(self, notice: Notice) -> None:
        self.pager.deliver(notice)
        if not self.crashed:
            self.crashed = True
            raise Crash()


@dataclass
class Channel:
    """A poster that keeps what the devops channel was sent."""

    posts: list[str] = field(default_factory=list)

    def post(self, channel: str, text: str, **_kw: Any) -> dict[str, Any]:
        self.posts.append(text)
        return {"ok": True}


@pytest.fixture
def pd(monkeypatch: pytest.MonkeyPatch) -> Iterator[PagerDutyApiServer]:
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", ONCALL_KEY)
    monkeypatch.setenv("PAGERDUTY_CTO_ROUTING_KEY", CTO_KEY)
    with PagerDutyApiServer() as server:
        yield server


@pytest.fixture
def pager(pd: PagerDutyApiServer) -> Iterator[PagerDutyNotifier]:
    made = PagerDutyNotifier(
        {"oncall": ONCALL_KEY, "cto": CTO_KEY}, events_url=pd.url, verify=pd.ca_bundle
    )
    yield made
    made.close()


@pytest.fixture
def admin_bot(settings: Settings, clock: Clock) -> Iterator[Rollbot]:
    register_provider_steps()
    with_admin = settings.model_copy(update={"slack": SlackConfig(database_admin="S0DBA")})
    rollbot = Rollbot.open(with_admin, clock=clock)
    yield rollbot
    rollbot.store.dispose()


def test_after_hours_production_pages_twice_once_each_even_after_a_crash(
    admin_bot: Rollbot, clock: Clock, pd: PagerDutyApiServer, pager: PagerDutyNotifier
) -> None:
    channel = Channel()
    devops = DevopsChannel(channel, "#devops-team")  # type: ignore[arg-type]
    incident = admin_bot.open_incident("alice", "orders corrupted", environment="production")
    with pytest.raises(Crash):
        Deliverer(admin_bot.store, [devops, CrashOnce(pager)], clock).deliver_due()
    clock.advance(seconds=CLAIM_SECONDS + 1)  # the dead worker's claim runs out
    restarted = Deliverer(admin_bot.store, [devops, pager], clock)
    restarted.deliver_due()

    alerts = pd.opened_alerts
    assert sorted(a.routing_key for a in alerts) == sorted([ONCALL_KEY, CTO_KEY])
    assert len({a.dedup_key for a in alerts}) == 2  # one key each, the re-send folded in
    assert all(a.severity == "critical" for a in alerts)
    assert len(channel.posts) == 1 and "<!subteam^S0DBA>" not in channel.posts[0]

    admin_bot.cancel(incident.id, "alice", "false alarm")
    restarted.deliver_due()
    assert [a.status for a in pd.opened_alerts] == ["resolved", "resolved"]


def test_resolving_resolves_the_alerts_the_incident_raised(
    admin_bot: Rollbot, clock: Clock, pd: PagerDutyApiServer, pager: PagerDutyNotifier
) -> None:
    deliverer = Deliverer(admin_bot.store, [pager], clock)
    incident = admin_bot.open_incident("alice", "app broken", environment="production")
    admin_bot.answer(incident.id, "app_broken", "alice")
    admin_bot.choose_method(incident.id, "app_rollback", "alice")
    admin_bot.request_approval(incident.id, "alice")
    admin_bot.approve(incident.id, "bob")
    admin_bot.start(incident.id, "alice")
    assert Executor(admin_bot).run_incident(incident.id).state == "verifying"
    deliverer.deliver_due()
    assert [a.status for a in pd.opened_alerts] == ["triggered", "triggered"]
    clock.advance(hours=8)  # the next morning, in business hours: still resolved
    admin_bot.resolve(incident.id, "alice", confirm_unticked=True)
    deliverer.deliver_due()
    assert [a.status for a in pd.opened_alerts] == ["resolved", "resolved"]


def test_in_hours_staging_pages_nobody_and_mentions_the_admin(
    admin_bot: Rollbot, clock: Clock, pd: PagerDutyApiServer, pager: PagerDutyNotifier
) -> None:
    clock.advance(hours=8)  # Tuesday 11:00 UTC: business hours
    channel = Channel()
    devops = DevopsChannel(channel, "#devops-team")  # type: ignore[arg-type]
    admin_bot.open_incident("alice", "bad migration", environment="staging")
    Deliverer(admin_bot.store, [devops, pager], clock).deliver_due()
    assert pd.events == []
    (post,) = channel.posts
    assert post.startswith(":rotating_light: <!subteam^S0DBA> INC-")


def test_a_cli_command_sends_the_pages_its_change_queued(
    tmp_path: Path, pd: PagerDutyApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Slack worker runs beside a terminal user: the command delivers before it exits."""
    from bot.config import BusinessHoursConfig
    from handlers.cli import main
    from handlers.runtime import load_config
    from tests.fake_provider import write_fake_config

    monkeypatch.setenv("ROLLBOT_PAGERDUTY_EVENTS_URL", pd.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(pd.ca_bundle))
    config = write_fake_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    closed = BusinessHoursConfig(days=())  # after hours, whenever the test runs
    settings = load_config(config).model_copy(update={"business_hours": closed})
    rollbot = Rollbot.open(settings)
    incident = rollbot.open_incident("alice", "orders corrupted", environment="production")
    rollbot.store.dispose()
    with config.open("a") as f:
        f.write("\n[business_hours]\ndays = []\n")  # never in business hours
    assert main(["--config", str(config), "show", incident.ref]) == 0
    assert sorted(a.routing_key for a in pd.opened_alerts) == sorted([ONCALL_KEY, CTO_KEY])


def test_acknowledging_stops_the_paging_and_is_refused_without_a_page(
    admin_bot: Rollbot, clock: Clock, pd: PagerDutyApiServer, pager: PagerDutyNotifier
) -> None:
    from bot.errors import RollbotError

    deliverer = Deliverer(admin_bot.store, [pager], clock)
    incident = admin_bot.open_incident("alice", "orders corrupted", environment="production")
    deliverer.deliver_due()
    assert admin_bot.paging(incident.id) == {"oncall": "triggered", "cto": "triggered"}
    admin_bot.acknowledge_page(incident.id, "mallory")  # whoever was woken up
    deliverer.deliver_due()
    assert [a.status for a in pd.opened_alerts] == ["acknowledged", "acknowledged"]
    assert admin_bot.paging(incident.id) == {"oncall": "acknowledged", "cto": "acknowledged"}
    with pytest.raises(RollbotError, match="no open page to acknowledge"):
        admin_bot.acknowledge_page(incident.id, "alice")


@dataclass
class Threads:
    """A poster that keeps what each thread was sent."""

    posts: list[tuple[str, str, str | None]] = field(default_factory=list)

    def post(self, channel: str, text: str, thread_ts: str | None = None) -> dict[str, Any]:
        self.posts.append((channel, text, thread_ts))
        return {"ok": True}


def test_a_thread_line_goes_to_the_incident_thread_and_never_pages(
    admin_bot: Rollbot, clock: Clock, pd: PagerDutyApiServer, pager: PagerDutyNotifier
) -> None:
    from bot import outbox
    from bot.models import Incident
    from handlers.slack.notices import IncidentThread

    incident = admin_bot.open_incident("alice", "orders corrupted", environment="production")
    with admin_bot.store.session() as session:
        row = session.get(Incident, incident.id)
        row.chat_channel, row.chat_thread = "C0INC", "1700000000.000100"
        outbox.queue_thread(session, row, "error-rate reading 1: 0.01 token=xoxb-1-2-abc", clock())
    threads = Threads()
    place = {incident.id: ("C0INC", "1700000000.000100")}.get
    thread = IncidentThread(threads, place)  # type: ignore[arg-type]
    Deliverer(admin_bot.store, [thread, pager], clock).deliver_due()
    (post,) = threads.posts
    assert post[0] == "C0INC" and post[2] == "1700000000.000100"
    assert "error-rate reading 1: 0.01" in post[1] and "xoxb-1-2-abc" not in post[1]
    # Only the incident's opening paged (after hours, production): the line paged nobody.
    assert len(pd.opened_alerts) == 2
    assert outbox.page_states(admin_bot.store, incident.id) == {
        "oncall": "triggered",
        "cto": "triggered",
    }
