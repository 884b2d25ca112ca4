"""Running rollbot in production, tried on a served app: JSON logs, probes, metrics, and two
servers on one host (issue 10, "Operations")."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import tests.slack.test_outage as outage
from providers.postgres.cluster import ThrowawayCluster
from tests.slack.conftest import ALICE, BOB, REQUESTER, running_fake_slack
from tests.slack.driver import Card, SlackDriver
from tests.slack.serving import Served, serve
from tests.slack.signing import post_signed
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
CONTROL = re.compile(r"Control socket listening at (\S+)")


def get(served: Served, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{served.port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def readyz(served: Served) -> tuple[int, dict[str, Any]]:
    status, body = get(served, "/readyz")
    return status, json.loads(body)


def samples(served: Served) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``: (name, labels) -> value."""
    status, text = get(served, "/metrics")
    assert status == 200, text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str):
    return found.get((name, frozenset(labels.items())))


def wait_readyz(served: Served, status: int, what: str) -> dict[str, Any]:
    def answered() -> dict[str, Any] | None:
        got, body = readyz(served)
        return body if got == status else None

    return wait_until(answered, what)


def roll_the_app_back(d: SlackDriver, marker: str) -> Card:
    """The app-rollback path of the production runbook, up to verifying (one command step)."""
    card = d.open_card(REQUESTER, f"production checkout page 500s {marker}")
    d.wait_card(card, lambda t: "rb_answer:app_broken" in t, "production question")
    d.click(REQUESTER, card, "rb_answer:app_broken")
    d.wait_card(card, lambda t: "rb_choose:app_rollback" in t, "recommendation")
    d.click(REQUESTER, card, "rb_choose:app_rollback")
    d.wait_state(card, "method_chosen")
    d.click(REQUESTER, card, "rb_request_approval")
    d.wait_state(card, "awaiting_approval")
    d.click(BOB, card, "rb_approve")
    d.wait_card(card, lambda t: "rb_run:" in t, "run button")
    d.click(REQUESTER, card, "rb_run")
    text = d.wait_card(card, lambda t: "verifying" in t or "· failed" in t, "verifying")
    assert "verifying" in text, text
    return card


def test_json_logs_are_one_object_per_line(prod_db: str, tmp_path: Path) -> None:
    """Start, a whole flow (acks, the worker, a step), a refused request, a stop: every line
    gunicorn and rollbot print is one JSON object, and a clean run warns about nothing."""
    with running_fake_slack() as fake:
        served = serve(fake, prod_db, tmp_path, serve_args=("--log-format", "json"))
        try:
            d = served.driver()
            card = roll_the_app_back(d, "json-logs")
            refused = post_signed(
                f"http://127.0.0.1:{served.port}/slack/events", "{}", "application/json"
            )
            assert refused.status == 400
            d.click(ALICE, card, "rb_resolve")
            d.wait_ephemeral(ALICE, "unticked checklist")
        finally:
            served.stop()
    lines = served.log.read_text().splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {n} is not JSON: {line!r}") from None
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message", "pid"} <= record.keys(), line
        records.append(record)
    loggers = {r["logger"] for r in records}
    assert {"gunicorn.error", "handlers.slack.worker", "handlers.slack.gate"} <= loggers
    assert any("Shutting down" in r["message"] for r in records)  # the master's last line
    noisy = [r for r in records if r["level"] not in ("DEBUG", "INFO")]
    assert not noisy, noisy  # the two Bolt warnings at every start are gone, nothing else came


@pytest.fixture
def state_cluster() -> Iterator[ThrowawayCluster]:
    with ThrowawayCluster() as cluster:
        yield cluster


def test_readyz_fails_while_the_state_database_is_down(
    state_cluster: ThrowawayCluster, prod_db: str, tmp_path: Path
) -> None:
    state_url = state_cluster.create_database("rollbot_state")
    with running_fake_slack() as fake:
        served = serve(
            fake, prod_db, tmp_path, sqlite=False, extra_env={"ROLLBOT_DATABASE_URL": state_url}
        )
        try:
            body = wait_readyz(served, 200, "ready at the start")
            assert body == {
                "ready": True,
                "checks": {"state_database": "ok", "migrations": "ok", "worker": "ok"},
            }
            db = outage.Pausable(state_cluster)
            db.stop()
            try:
                body = wait_readyz(served, 503, "not ready while the database is down")
                assert body["ready"] is False
                assert body["checks"]["state_database"].startswith("unreachable"), body
                assert get(served, "/healthz")[0] == 200  # alive: not a reason to restart it
            finally:
                db.start()
            body = wait_readyz(served, 200, "ready again after the restart")
            assert body["checks"]["state_database"] == "ok"
        finally:
            served.stop()


def test_metrics_after_a_flow(prod_db: str, tmp_path: Path) -> None:
    """Two gunicorn workers and the worker process write their samples; any of them answers
    ``/metrics`` with the sum: ack latency by kind, the step and its outcome, the inbox."""
    with running_fake_slack() as fake:
        served = serve(fake, prod_db, tmp_path, serve_args=("--workers", "2"))
        try:
            roll_the_app_back(served.driver(), "metrics")
            step = {"kind": "command.app_rollback", "outcome": "succeeded"}
            found = wait_until(
                lambda: (s := samples(served)) and value(s, "rollbot_steps_total", **step) and s,
                "the step in /metrics",
            )
            assert value(found, "rollbot_steps_total", **step) == 1
            assert value(found, "rollbot_step_duration_seconds_count", **step) == 1
            assert value(found, "rollbot_slack_ack_seconds_count", kind="slash_command") == 1
            clicks = value(found, "rollbot_slack_ack_seconds_count", kind="block_actions")
            assert clicks is not None and clicks >= 5
            assert (
                value(found, "rollbot_slack_ack_seconds_bucket", kind="block_actions", le="+Inf")
                == clicks
            )
            assert value(found, "rollbot_slack_requests_total", kind="block_actions", status="200")
            recorded = value(found, "rollbot_inbox_accepted_total", result="recorded")
            assert recorded
            assert value(found, "rollbot_inbox_write_seconds_count", result="recorded") == recorded
            assert value(found, "rollbot_pages_sent_total", provider="pagerduty") == 0
            assert value(found, "rollbot_inbox_readable") == 1
            assert value(found, "rollbot_inbox_depth", status="pending") is not None
            assert value(found, "rollbot_inbox_oldest_unfinished_age_seconds") is not None
            for _ in range(6):  # whichever gunicorn worker answers, the same sums
                again = samples(served)
                assert value(again, "rollbot_steps_total", **step) == 1
                assert value(again, "rollbot_slack_ack_seconds_count", kind="slash_command") == 1
        finally:
            served.stop()


def control_socket(served: Served) -> Path:
    found = wait_until(lambda: CONTROL.search(served.log.read_text()), "the control socket")
    return Path(found.group(1))


def test_two_servers_on_one_host(prod_db: str, tmp_path: Path) -> None:
    """Same user, same $HOME and $XDG_RUNTIME_DIR (gunicorn's default control socket path):
    each server has its own socket and metrics, and stopping one leaves the other alone."""
    shared = tmp_path / "home"
    shared.mkdir()
    env = {"HOME": str(shared), "XDG_RUNTIME_DIR": str(shared)}
    with running_fake_slack() as fake:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = serve(fake, prod_db, tmp_path / "a", extra_env=env)
        try:
            b = serve(fake, prod_db, tmp_path / "b", extra_env=env)
            try:
                sock_a, sock_b = control_socket(a), control_socket(b)
                assert sock_a != sock_b
                assert sock_a.exists() and sock_b.exists()
                assert not list(shared.rglob("gunicorn.ctl"))
                assert a.driver().rollback(REQUESTER, "production only-on-a").status == 200
                seen_b = samples(b)
                seen_a = samples(a)
                assert value(seen_a, "rollbot_slack_ack_seconds_count", kind="slash_command") == 1
                assert (
                    value(seen_b, "rollbot_slack_ack_seconds_count", kind="slash_command") is None
                )
                a.stop()
                assert not sock_a.parent.exists()  # its runtime folder went with it
                assert sock_b.exists()
                assert wait_readyz(b, 200, "the other server ready")["checks"]["worker"] == "ok"
            finally:
                b.stop()
            assert not sock_b.parent.exists()
        finally:
            a.stop()
    for log in (a.log, b.log):
        assert "Failed to start control socket" not in log.read_text()
