"""The app around a rollback: app rollback by webhook, and the repoint after a restore into
a new database, by command (the URL only in its environment), by webhook, or by a person
who says it is done. A local HTTP receiver plays the team's deploy system."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.config import Settings, load_settings
from bot.errors import ConfigError, NotAuthorizedError, RollbotError
from bot.executor import Executor
from bot.models import AuditEvent, Incident
from bot.service import Rollbot
from tests.core_fixtures import Clock
from tests.fake_provider import FAKE_DB_PASSWORD, write_fake_config

DEPLOY_TOKEN = "deploy-token-5b1d7a"
NEW_URL = f"postgresql://app:{FAKE_DB_PASSWORD}@restored-1.fake.internal:5432/app"


@dataclass
class Receiver:
    """The team's deploy system: what it was sent, and what it answers."""

    url: str = ""
    status: int = 200
    answer: str = '{"rollout": "started", "revision": 41}'
    calls: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    seen = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            seen.calls.append({"path": self.path, "headers": dict(self.headers), "body": body})
            data = seen.answer.encode()
            self.send_response(seen.status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield seen
    server.shutdown()
    server.server_close()


def with_deploy(tmp_path: Path, state_url: str, deploy: str) -> Settings:
    config = write_fake_config(tmp_path, state_url)
    config.write_text(config.read_text() + "\n[environments.production.deploy]\n" + deploy)
    return load_settings(config)


@pytest.fixture
def opened(clock: Clock) -> Iterator[list[Rollbot]]:
    bots: list[Rollbot] = []
    yield bots
    for b in bots:
        b.store.dispose()


def open_bot(settings: Settings, clock: Clock, opened: list[Rollbot]) -> Rollbot:
    bot = Rollbot.open(settings, clock=clock)
    opened.append(bot)
    return bot


def run(bot: Rollbot, method: str, answers: tuple[str, ...], **options: Any) -> Incident:
    incident = bot.open_incident("alice", "orders corrupted", environment="production")
    for answer in answers:
        bot.answer(incident.id, answer, "alice")
    bot.choose_method(incident.id, method, "alice", options={"expect": "0001_good", **options})
    bot.request_approval(incident.id, "alice")
    bot.approve(incident.id, "bob")
    bot.start(incident.id, "alice")
    return Executor(bot).run_incident(incident.id)


def step(incident: Incident, kind: str) -> Any:
    return next(s for s in incident.steps if s.kind == kind)


def stored_text(bot: Rollbot, incident_id: int) -> str:
    """Everything rollbot keeps about the incident: steps, plan, audit trail."""
    incident = bot.get(incident_id)
    with bot.store.read() as session:
        audit = session.scalars(select(AuditEvent).where(AuditEvent.incident_id == incident_id))
        events = [f"{a.message} {json.dumps(a.data)}" for a in audit]
    steps = [json.dumps([s.params, s.result, s.error, s.plan_text]) for s in incident.steps]
    return "\n".join([*events, *steps])


# ----------------------------------------------------------------- repoint
def test_the_repoint_command_gets_the_new_url_only_through_its_environment(
    tmp_path: Path, state_url: str, clock: Clock, opened: list[Rollbot]
) -> None:
    received, cmdline = tmp_path / "received", tmp_path / "cmdline"
    script = tmp_path / "repoint.sh"
    script.write_text(
        f'printf %s "$ROLLBOT_NEW_DATABASE_URL" > {received}\n'
        f"tr '\\000' ' ' < /proc/$$/cmdline > {cmdline}\n"
        'echo "repointed to $ROLLBOT_NEW_DATABASE_URL"\n'
    )
    settings = with_deploy(tmp_path, state_url, f'repoint_command = "sh {script}"\n')
    bot = open_bot(settings, clock, opened)
    done = run(bot, "pitr", ("data_corruption",), into_new=True)
    assert done.state == "verifying", [s.error for s in done.steps]
    repoint = step(done, "deploy.repoint")
    assert "repoint command exited 0" in repoint.result["summary"]
    assert "the app now points at fake database restored-" in repoint.result["summary"]
    assert received.read_text() == NEW_URL.replace("restored-1", f"restored-{done.id}")
    assert FAKE_DB_PASSWORD not in cmdline.read_text()  # never on a command line
    assert "repointed to postgresql://app:***@" in repoint.result["tail"][-1]
    assert FAKE_DB_PASSWORD not in stored_text(bot, done.id)


def test_the_repoint_webhook_gets_the_new_url_in_its_body(
    tmp_path: Path,
    state_url: str,
    clock: Clock,
    opened: list[Rollbot],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", f"Bearer {DEPLOY_TOKEN}")
    hook = (
        f'[environments.production.deploy.repoint_webhook]\nurl = "{receiver.url}/repoint"\n'
        'headers_env = { Authorization = "DEPLOY_TOKEN" }\n'
        'body = { app = "shop", database_url = "{new_database_url}", why = "{incident}" }\n'
    )
    bot = open_bot(with_deploy(tmp_path, state_url, hook), clock, opened)
    done = run(bot, "pitr", ("data_corruption",), into_new=True)
    assert done.state == "verifying", [s.error for s in done.steps]
    (call,) = receiver.calls
    assert call["headers"]["Authorization"] == f"Bearer {DEPLOY_TOKEN}"
    assert call["body"]["database_url"].startswith(f"postgresql://app:{FAKE_DB_PASSWORD}@")
    assert call["body"] == {**call["body"], "app": "shop", "why": done.ref}
    assert "repoint webhook answered 200" in step(done, "deploy.repoint").result["summary"]
    text = stored_text(bot, done.id)
    assert FAKE_DB_PASSWORD not in text and DEPLOY_TOKEN not in text


def test_without_a_repoint_a_person_does_it_and_says_so(bot: Rollbot, clock: Clock) -> None:
    waiting = run(bot, "pitr", ("data_corruption",), into_new=True)
    assert waiting.state == "running"
    repoint = step(waiting, "deploy.repoint")
    assert repoint.status == "waiting"
    todo = repoint.result["instructions"]
    assert todo.startswith("set DATABASE_URL to postgresql://app:***@restored-")
    assert "and redeploy" in todo and FAKE_DB_PASSWORD not in todo
    assert step(waiting, "fake.verify").status == "queued"  # nothing after it ran
    assert Executor(bot).run_incident(waiting.id).state == "running"  # still waits

    with pytest.raises(NotAuthorizedError):
        bot.decide_step(waiting.id, repoint.id, "mallory", "done")
    with pytest.raises(RollbotError, match="cannot retry it"):
        bot.decide_step(waiting.id, repoint.id, "alice", "retry")
    verify = step(waiting, "fake.verify")
    with pytest.raises(RollbotError, match="is queued: cannot done it"):
        bot.decide_step(waiting.id, verify.id, "alice", "done")

    bot.decide_step(waiting.id, repoint.id, "bob", "done")
    done = Executor(bot).run_incident(waiting.id)
    assert done.state == "verifying", [s.error for s in done.steps]
    repoint = step(done, "deploy.repoint")
    assert repoint.status == "succeeded" and repoint.result["done_by"] == "bob"
    assert step(done, "fake.verify").result["checked"] == f"restored-{done.id}"


# ----------------------------------------------------------------- app rollback
def app_hook(receiver: Receiver) -> str:
    return (
        f'[environments.production.deploy.app_rollback_webhook]\nurl = "{receiver.url}/undo"\n'
        'body = { service = "shop", reason = "{incident} by {requester} ({tier})" }\n'
    )


def test_app_rollback_by_webhook_posts_its_status_and_body_tail(
    tmp_path: Path, state_url: str, clock: Clock, opened: list[Rollbot], receiver: Receiver
) -> None:
    bot = open_bot(with_deploy(tmp_path, state_url, app_hook(receiver)), clock, opened)
    done = run(bot, "app_rollback", ("app_broken",))
    assert done.state == "verifying", [s.error for s in done.steps]
    rollback = step(done, "deploy.app_rollback")
    assert rollback.result["summary"] == (
        'app rollback webhook answered 200: {"rollout": "started", "revision": 41}'
    )
    assert f"POST {receiver.url}/undo" in rollback.plan_text
    (call,) = receiver.calls
    assert call["body"] == {"service": "shop", "reason": f"{done.ref} by alice (production)"}


def test_a_webhook_answering_500_fails_the_step_and_leaves_the_incident_open(
    tmp_path: Path, state_url: str, clock: Clock, opened: list[Rollbot], receiver: Receiver
) -> None:
    receiver.status, receiver.answer = 500, "deploy failed: image shop:41 not found\n"
    bot = open_bot(with_deploy(tmp_path, state_url, app_hook(receiver)), clock, opened)
    failed = run(bot, "app_rollback", ("app_broken",))
    assert failed.state == "failed"  # open: people choose another method or resolve
    rollback = step(failed, "deploy.app_rollback")
    assert (
        rollback.error
        == "app rollback webhook answered 500: deploy failed: image shop:41 not found"
    )
    assert step(failed, "fake.verify").status == "cancelled"


def test_an_unreachable_webhook_says_so(
    tmp_path: Path, state_url: str, clock: Clock, opened: list[Rollbot], receiver: Receiver
) -> None:
    dead = Receiver(url="http://127.0.0.1:9")  # discard port: nothing listens
    bot = open_bot(with_deploy(tmp_path, state_url, app_hook(dead)), clock, opened)
    failed = run(bot, "app_rollback", ("app_broken",))
    assert failed.state == "failed"
    assert step(failed, "deploy.app_rollback").error.startswith(
        "POST http://127.0.0.1:9/undo: no answer (ConnectError"
    )


@pytest.mark.parametrize(
    ("deploy", "expected"),
    [
        (
            '[environments.production.deploy.app_rollback_webhook]\nurl = "https://d.example"\n'
            'body = { x = "{password}" }\n',
            "body names ['password']",
        ),
        (
            'repoint_command = "./repoint.sh"\n'
            '[environments.production.deploy.repoint_webhook]\nurl = "https://d.example"\n'
            'body = { u = "{new_database_url}" }\n',
            "set either repoint_command or repoint_webhook, not both",
        ),
        (
            '[environments.production.deploy.repoint_webhook]\nurl = "https://d.example"\n',
            "its body must carry {new_database_url}",
        ),
        (
            '[environments.production.deploy.app_rollback_webhook]\nurl = "ftp://d.example"\n',
            "is not an http(s) URL",
        ),
    ],
)
def test_bad_deploy_settings_are_refused_with_the_reason(
    tmp_path: Path, state_url: str, deploy: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        with_deploy(tmp_path, state_url, deploy)
    assert expected in str(refused.value)
