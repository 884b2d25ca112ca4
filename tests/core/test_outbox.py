"""Events after commit: notices recorded with the change, delivered once, retried, never lost."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from bot.errors import ProviderError
from bot.models import OutboxItem
from bot.notify import Audience, Notice
from bot.outbox import CLAIM_SECONDS, Deliverer
from bot.service import Rollbot
from tests.core_fixtures import Clock


class Crash(BaseException):
    """Ends delivery the way SIGKILL would: after sending, before marking it sent."""


@dataclass
class Recorder:
    """A notifier that keeps alerts by key, as PagerDuty does with dedup_key."""

    audiences: tuple[Audience, ...]
    sent: list[Notice] = field(default_factory=list)
    fail: list[BaseException] = field(default_factory=list)

    def deliver(self, notice: Notice) -> None:
        self.sent.append(notice)
        if self.fail:
            raise self.fail.pop(0)

    def alerts(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for n in self.sent:
            out.setdefault(n.key, []).append(n.kind)
        return out


@pytest.fixture(autouse=True)
def routing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "R0ONCALLKEY00000000000000000000")
    monkeypatch.setenv("PAGERDUTY_CTO_ROUTING_KEY", "R0CTOKEY0000000000000000000000")


def rows(bot: Rollbot) -> list[OutboxItem]:
    with bot.store.read() as session:
        return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def test_an_after_hours_production_incident_is_recorded_for_on_call_and_the_cto(
    bot: Rollbot,
) -> None:
    incident = bot.open_incident("alice", "orders corrupted", environment="production")
    assert [(r.kind, r.audience) for r in rows(bot)] == [
        ("opened", "devops"),
        ("opened", "oncall"),
        ("opened", "cto"),
    ]
    bot.cancel(incident.id, "alice")
    ends = [(r.kind, r.audience) for r in rows(bot)][3:]
    assert ends == [("cancelled", "devops"), ("cancelled", "oncall"), ("cancelled", "cto")]


def test_a_crash_between_send_and_mark_resends_with_the_same_key(
    bot: Rollbot, clock: Clock
) -> None:
    pager = Recorder(("oncall", "cto"), fail=[Crash()])
    bot.open_incident("alice", "orders corrupted", environment="production")
    with pytest.raises(Crash):
        Deliverer(bot.store, [pager], clock).deliver_due()
    assert len(pager.sent) == 1 and all(r.sent_at is None for r in rows(bot))

    restarted = Deliverer(bot.store, [pager], clock)
    assert restarted.deliver_due() == 1  # the cto page; the crashed one is still claimed
    clock.advance(seconds=CLAIM_SECONDS + 1)
    assert restarted.deliver_due() == 1  # the claim expired: delivered again
    assert restarted.deliver_due() == 0  # and never a third time
    assert sorted(len(kinds) for kinds in pager.alerts().values()) == [1, 2]
    assert len(pager.alerts()) == 2  # two alerts (on-call, CTO), one key each


def test_failures_are_retried_with_backoff_and_a_refusal_is_told_in_the_thread(
    bot: Rollbot, clock: Clock
) -> None:
    told: list[str] = []
    busy = ProviderError("PagerDuty answered 429")
    refused = ProviderError("PagerDuty answered 400: invalid routing key")
    refused.retryable = False  # type: ignore[attr-defined]
    pager = Recorder(("oncall",), fail=[busy])
    cto = Recorder(("cto",), fail=[refused])
    deliverer = Deliverer(
        bot.store, [pager, cto], clock, tell_thread=lambda _i, text: told.append(text)
    )
    bot.open_incident("alice", "orders corrupted", environment="production")
    assert deliverer.deliver_due() == 0
    assert deliverer.deliver_due() == 0  # not due again yet
    clock.advance(seconds=6)
    assert deliverer.deliver_due() == 1  # the retry went out
    clock.advance(hours=2)
    assert deliverer.deliver_due() == 0  # the refused one is never sent again
    assert len(cto.sent) == 1
    assert any("failed (will retry): PagerDuty answered 429" in t for t in told)
    assert any("failed (gave up): PagerDuty answered 400" in t for t in told)


def test_a_drill_pages_nobody(bot: Rollbot) -> None:
    bot.open_incident("alice", "drill", environment="production", source="drill")
    assert rows(bot) == []
