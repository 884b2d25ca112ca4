"""The PagerDuty provider against a local HTTPS fake of PagerDuty held to its specs.

Every test runs with a ``PagerDutyApiServer`` whose exit fails the test when a request or
a response broke PagerDuty's OpenAPI documents, so each delivery here also proves the
events rollbot sends valid. Without the specs the fake serves unchecked and the tests
that are about the contract skip, saying why.
"""

from __future__ import annotations

import json
import logging
import socket
import traceback
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, get_args

import httpx
import pagerduty
import pytest

from bot.config import Settings
from bot.errors import ProviderError
from bot.notify import Notice, NoticeKind
from bot.redact import redact
from providers.pagerduty.notifier import ACTIONS, PagerDutyNotifier
from providers.pagerduty.oncall import who_is_on_call
from tests.pagerduty_api import OnCall, PagerDutyApiServer, missing_spec_reason, spec_available

ONCALL_KEY = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"  # routing keys are 32 characters
CTO_KEY = "f9e8d7c6b5a4938271605f4e3d2c1b0a"
TOKEN = "u+pdTestTokenAbCdEfGh"
POLICY = "PEPOLCY"
FAST = 0.01  # the client's one retry waits this long here (0.5 s in production)

needs_spec = pytest.mark.skipif(not spec_available(), reason=missing_spec_reason())


@pytest.fixture
def pd() -> Iterator[PagerDutyApiServer]:
    with PagerDutyApiServer(api_token=TOKEN) as server:
        yield server


@pytest.fixture
def notifier(pd: PagerDutyApiServer) -> Iterator[PagerDutyNotifier]:
    made = PagerDutyNotifier(
        {"oncall": ONCALL_KEY, "cto": CTO_KEY},
        events_url=pd.url,
        verify=pd.ca_bundle,
        retry_wait=FAST,
    )
    yield made
    made.close()


def notice(kind: NoticeKind = "opened", audience: str = "oncall", **changes: Any) -> Notice:
    base = Notice(
        kind=kind,
        audience=audience,  # type: ignore[arg-type]
        incident_id=12,
        ref="INC-12",
        environment="prod",
        tier="production",
        summary="INC-12 opened: restore prod to the 02:00 snapshot",
        key=f"rollbot/prod/INC-12/{audience}",
        link="https://example.slack.com/archives/C1/p1700000000000100",
        details={"method": "restore", "requester": "U123"},
    )
    return replace(base, **changes)


def refusal(notifier: PagerDutyNotifier, sent: Notice) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        notifier.deliver(sent)
    return caught.value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the events: shapes -----------------------------------------------------------


@needs_spec
def test_trigger_carries_the_incident_in_the_spec_s_shape(
    pd: PagerDutyApiServer, notifier: PagerDutyNotifier
) -> None:
    notifier.deliver(notice())

    [event] = pd.events
    assert event.status == 202
    assert event.body == {
        "routing_key": ONCALL_KEY,
        "event_action": "trigger",
        "dedup_key": "rollbot/prod/INC-12/oncall",
        "payload": {
            "summary": "INC-12 opened: restore prod to the 02:00 snapshot",
            "source": "rollbot/prod",
            "severity": "critical",
            "component": "prod",
            "group": "production",
            "custom_details": {
                "method": "restore",
                "requester": "U123",
                "ref": "INC-12",
                "environment": "prod",
                "tier": "production",
            },
        },
        "links": [
            {
                "href": "https://example.slack.com/archives/C1/p1700000000000100",
                "text": "Incident thread",
            }
        ],
    }
    assert pd.checked and not pd.violations  # checked against the spec as it went


@needs_spec
@pytest.mark.parametrize(("kind", "action"), [("acknowledged", "acknowledge"), ("done", "resolve")])
def test_acknowledge_and_resolve_name_the_alert_and_nothing_else(
    pd: PagerDutyApiServer, notifier: PagerDutyNotifier, kind: NoticeKind, action: str
) -> None:
    notifier.deliver(notice(kind))

    assert [e.body for e in pd.events] == [
        {
            "routing_key": ONCALL_KEY,
            "event_action": action,
            "dedup_key": "rollbot/prod/INC-12/oncall",
        }
    ]
    assert pd.events[0].status == 202


def test_no_link_no_links_and_severity_follows_the_tier(
    pd: PagerDutyApiServer, notifier: PagerDutyNotifier
) -> None:
    notifier.deliver(notice(link=None, tier="staging", environment="stg", key="k-stg"))
    notifier.deliver(notice(tier="development", environment="dev", key="k-dev"))

    staging, development = (e.body for e in pd.events)
    assert "links" not in staging
    assert staging["payload"]["severity"] == "warning"
    assert staging["payload"]["source"] == "rollbot/stg"
    assert development["payload"]["severity"] == "info"


def test_every_notice_kind_has_an_event() -> None:
    """Every kind escalation may send to PagerDuty maps to an event action."""
    from bot.escalation import DEVOPS_ONLY, THREAD_ONLY

    assert set(get_args(NoticeKind)) - DEVOPS_ONLY - THREAD_ONLY <= set(ACTIONS)


# --- alerts: one per incident and routing key -------------------------------------


def test_the_same_notice_delivered_twice_is_one_alert(
    pd: PagerDutyApiServer, notifier: PagerDutyNotifier
) -> None:
    sent = notice("approval_waiting")
    notifier.deliver(sent)
    notifier.deliver(sent)  # the outbox's retry after a crash before marking it sent

    assert [e.status for e in pd.events] == [202, 202]
    assert {e.body["dedup_key"] for e in pd.events} == {sent.key}
    [alert] = pd.alerts.values()
    assert (alert.status, alert.events) == ("triggered", 2)
    assert len(pd.opened_alerts) == 1


@pytest.mark.parametrize("end", ["done", "resolved", "cancelled"])
def test_the_end_of_an_incident_resolves_the_alert_its_start_triggered(
    pd: PagerDutyApiServer, notifier: PagerDutyNotifier, end: NoticeKind
) -> None:
    notifier.deliver(notice("opened"))
    notifier.deliver(notice("acknowledged"))
    notifier.deliver(notice(end))
    notifier.deliver(notice(end))  # again: harmless

    alert = pd.alerts[(ONCALL_KEY, "rollbot/prod/INC-12/oncall")]
    assert alert.status == "resolved"
    assert alert.history == ["trigger", "acknowledge", "resolve"]
    assert len(pd.opened_alerts) == 1


def test_cto_and_on_call_keys_page_their_own_alerts(
    pd: PagerDutyApiServer, notifier: PagerDutyNotifier
) -> None:
    assert set(notifier.audiences) == {"oncall", "cto"}
    notifier.deliver(notice(audience="oncall"))
    notifier.deliver(notice(audience="cto"))
    notifier.deliver(notice("resolved", audience="cto"))

    alerts = pd.alerts
    assert set(alerts) == {
        (ONCALL_KEY, "rollbot/prod/INC-12/oncall"),
        (CTO_KEY, "rollbot/prod/INC-12/cto"),
    }
    assert alerts[(ONCALL_KEY, "rollbot/prod/INC-12/oncall")].status == "triggered"
    assert alerts[(CTO_KEY, "rollbot/prod/INC-12/cto")].status == "resolved"


def test_an_audience_without_a_key_is_refused_for_good(pd: PagerDutyApiServer) -> None:
    only_oncall = PagerDutyNotifier(
        {"oncall": ONCALL_KEY}, events_url=pd.url, verify=pd.ca_bundle, retry_wait=FAST
    )
    assert only_oncall.audiences == ("oncall",)
    error = refusal(only_oncall, notice(audience="cto"))
    assert error.retryable is False  # type: ignore[attr-defined]
    assert pd.events == []


# --- failures: what the outbox retries and what it gives up on ---------------------


def test_a_400_is_not_retried_and_says_what_pagerduty_said(
    pd: PagerDutyApiServer, notifier: PagerDutyNotifier
) -> None:
    pd.fail_next(r"/enqueue$", 400, message="'payload.summary' is missing or blank")

    error = refusal(notifier, notice())

    assert error.retryable is False  # type: ignore[attr-defined]
    assert str(error) == (
        "PagerDuty refused the trigger of INC-12 (oncall): "
        "400 Event object is invalid; 'payload.summary' is missing or blank"
    )
    assert [e.status for e in pd.events] == [400]  # no retry of a refusal


def test_a_malformed_routing_key_is_refused_without_showing_it(pd: PagerDutyApiServer) -> None:
    bad_key = "not-a-real-routing-key"
    broken = PagerDutyNotifier(
        {"oncall": bad_key}, events_url=pd.url, verify=pd.ca_bundle, retry_wait=FAST
    )

    error = refusal(broken, notice())

    assert error.retryable is False  # type: ignore[attr-defined]
    assert "Length of 'routing_key' is incorrect" in str(error)
    assert bad_key not in str(error) and bad_key not in repr(error)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_busy_or_failing_pagerduty_is_retried_later(
    pd: PagerDutyApiServer, notifier: PagerDutyNotifier, status: int
) -> None:
    pd.fail_next(r"/enqueue$", status, times=2, retry_after=30)

    error = refusal(notifier, notice())

    assert error.retryable is True  # type: ignore[attr-defined]
    assert error.status == status  # type: ignore[attr-defined]
    assert error.retry_after == 30  # type: ignore[attr-defined]
    assert str(error).startswith("PagerDuty ") and f": {status}" in str(error)
    assert "\n" not in str(error)
    # The client's own retry, once and short; longer waits are the outbox's backoff.
    assert [e.status for e in pd.events] == [status, status]
    assert pd.alerts == {}


@pytest.mark.parametrize("status", [429, 500])
def test_one_blip_is_absorbed_by_the_client_s_single_retry(
    pd: PagerDutyApiServer, notifier: PagerDutyNotifier, status: int
) -> None:
    pd.fail_next(r"/enqueue$", status)

    notifier.deliver(notice())

    assert [e.status for e in pd.events] == [status, 202]
    assert len(pd.alerts) == 1


def test_an_unreachable_pagerduty_is_retried_later() -> None:
    nowhere = PagerDutyNotifier(
        {"oncall": ONCALL_KEY}, events_url=f"https://127.0.0.1:{free_port()}", retry_wait=FAST
    )

    error = refusal(nowhere, notice())

    assert error.retryable is True  # type: ignore[attr-defined]
    assert str(error).startswith("PagerDuty could not be reached for the trigger of INC-12")
    assert "ConnectError" in str(error)


# --- transport: why the fake speaks HTTPS ------------------------------------------


def test_the_client_refuses_plain_http(pd: PagerDutyApiServer) -> None:
    plain = pd.url.replace("https://", "http://")
    with pytest.raises(pagerduty.UrlError, match="https://"):
        pagerduty.EventsApiV2Client(ONCALL_KEY, base_url=plain)
    with pytest.raises(pagerduty.UrlError, match="https://"):
        pagerduty.RestApiV2Client(TOKEN, base_url=plain)

    with pytest.raises(ProviderError, match="only speaks https://") as caught:
        PagerDutyNotifier({"oncall": ONCALL_KEY}, events_url=plain)
    assert caught.value.retryable is False  # type: ignore[attr-defined]
    with pytest.raises(ProviderError, match="only speaks https://"):
        who_is_on_call(TOKEN, POLICY, api_url=plain)


def test_trust_comes_from_verify_or_ssl_cert_file_not_requests_ca_bundle(
    pd: PagerDutyApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client is httpx2-based: ``$REQUESTS_CA_BUNDLE`` means nothing to it."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pd.ca_bundle)
    untrusting = PagerDutyNotifier({"oncall": ONCALL_KEY}, events_url=pd.url, retry_wait=FAST)
    error = refusal(untrusting, notice())
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert error.retryable is True  # type: ignore[attr-defined]

    monkeypatch.setenv("SSL_CERT_FILE", pd.ca_bundle)
    PagerDutyNotifier({"oncall": ONCALL_KEY}, events_url=pd.url).deliver(notice())
    assert len(pd.alerts) == 1


# --- who is on call ------------------------------------------------------------------


def test_on_call_names_with_their_levels(pd: PagerDutyApiServer) -> None:
    pd.set_on_call(POLICY, [("Grace Hopper", 2), ("Ada Lovelace", 1)])
    pd.set_on_call("POTHER1", [("Someone Else", 1)])
    pd.on_call.append(OnCall("Ada Lovelace", 1, POLICY, schedule="Weekend rotation"))

    names = who_is_on_call(TOKEN, POLICY, api_url=pd.url, verify=pd.ca_bundle)

    assert names == ["Ada Lovelace (level 1)", "Grace Hopper (level 2)"]
    [asked] = pd.requests
    assert asked.query["escalation_policy_ids[]"] == [POLICY]
    assert asked.query["earliest"] == ["true"]


def test_on_call_follows_pagination(pd: PagerDutyApiServer) -> None:
    pd.set_on_call(POLICY, [(f"Person {i:03}", 1 + i // 60) for i in range(130)])

    names = who_is_on_call(TOKEN, POLICY, api_url=pd.url, verify=pd.ca_bundle)

    assert len(names) == 130 and names[0] == "Person 000 (level 1)"
    assert [r.query["offset"] for r in pd.requests] == [["0"], ["100"]]


def test_on_call_failures_are_one_plain_line(pd: PagerDutyApiServer) -> None:
    with pytest.raises(ProviderError) as refused:
        who_is_on_call("u+wrongTokenXyz123456", POLICY, api_url=pd.url, verify=pd.ca_bundle)
    assert refused.value.retryable is False  # type: ignore[attr-defined]
    assert str(refused.value) == (
        f"PagerDuty refused the on-call list of escalation policy {POLICY}: "
        "401 Authentication failed"
    )
    assert "wrongToken" not in str(refused.value)

    pd.fail_next(r"^/oncalls$", 500, times=2)
    with pytest.raises(ProviderError) as failed:
        who_is_on_call(TOKEN, POLICY, api_url=pd.url, verify=pd.ca_bundle, retry_wait=FAST)
    assert failed.value.retryable is True  # type: ignore[attr-defined]
    if pd.checked:  # the REST spec lists no 5xx for GET /oncalls: noted, not a violation
        assert pd.unchecked == ["GET /oncalls -> 500"] * 2


# --- secrets ---------------------------------------------------------------------------


def test_keys_and_token_never_reach_logs_or_errors(
    pd: PagerDutyApiServer, notifier: PagerDutyNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    notifier.deliver(notice(details={"note": f"pasted {ONCALL_KEY} by mistake"}))
    notifier.deliver(notice("resolved", audience="cto"))
    for status in (400, 429, 500):
        pd.fail_next(r"/enqueue$", status, times=2)
        with pytest.raises(ProviderError) as caught:
            notifier.deliver(notice())
        errors.append(caught.value)
    with pytest.raises(ProviderError) as caught:
        who_is_on_call(TOKEN[:-1] + "X", POLICY, api_url=pd.url, verify=pd.ca_bundle)
    errors.append(caught.value)
    who_is_on_call(TOKEN, POLICY, api_url=pd.url, verify=pd.ca_bundle)

    said = [r.getMessage() for r in caplog.records] + [
        "".join(traceback.format_exception(e)) + repr(e) for e in errors
    ]
    assert any("retrying" in s for s in said)  # the client did log, through caplog
    for secret in (ONCALL_KEY, CTO_KEY, TOKEN, TOKEN[:-1] + "X"):
        assert not [s for s in said if secret in s]
    assert ONCALL_KEY not in json.dumps(pd.events[0].body["payload"])  # redacted details
    assert redact(f"keys {ONCALL_KEY} {CTO_KEY}") == "keys *** ***"


# --- configuration -------------------------------------------------------------------


def test_from_settings_reads_the_named_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    for name in ("PAGERDUTY_ROUTING_KEY", "PAGERDUTY_CTO_ROUTING_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert PagerDutyNotifier.from_settings(settings) is None

    key = "1234567890abcdef1234567890abcdef"
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", key)
    made = PagerDutyNotifier.from_settings(settings)
    assert made is not None and made.audiences == ("oncall",)
    assert redact(f"key={key}!") == "key=***!"

    monkeypatch.setenv("PAGERDUTY_CTO_ROUTING_KEY", CTO_KEY)
    both = PagerDutyNotifier.from_settings(settings)
    assert both is not None and set(both.audiences) == {"oncall", "cto"}


# --- the fake itself -----------------------------------------------------------------


def test_a_trigger_after_a_resolve_opens_a_new_alert(
    pd: PagerDutyApiServer, notifier: PagerDutyNotifier
) -> None:
    notifier.deliver(notice("opened"))
    notifier.deliver(notice("resolved"))
    notifier.deliver(notice("step_failed"))

    assert [a.status for a in pd.opened_alerts] == ["resolved", "triggered"]


@needs_spec
def test_the_fake_records_what_breaks_the_spec(pd: PagerDutyApiServer) -> None:
    bad = {
        "routing_key": ONCALL_KEY,
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "x", "severity": "critical", "colour": "red"},
    }
    with httpx.Client(verify=pd.client_context()) as client:
        answered = client.post(f"{pd.url}/v2/enqueue", json=bad)
        wrong = client.post(f"{pd.url}/v2/enqueue", json={**bad, "event_action": "explode"})
    assert answered.status_code == 400 and wrong.status_code == 400

    found = [str(v) for v in pd.take_violations()]
    assert len(found) == 2
    assert "body.payload.colour is not in the spec" in found[0]
    assert "request POST /v2/enqueue -> 400" in found[1]
