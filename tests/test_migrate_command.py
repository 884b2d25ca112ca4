"""``rollbot migrate --env NAME`` on a real PostgreSQL, with real squawk and real snapshots."""

from __future__ import annotations

import getpass
import json
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from sqlalchemy import select

from bot.config import load_settings
from bot.models import AuditEvent
from bot.service import Rollbot
from handlers.cli import main
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from tests.test_forward_fix_incident import column_exists, sample_upto
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres


def write_config(tmp_path: Path, migrations: Path, tier: str, migrate: str | None = None) -> Path:
    command = f'migrate = "{migrate}"' if migrate else ""
    path = tmp_path / "rollbot.toml"
    path.write_text(
        f"""
database_url = "sqlite:///{tmp_path / "state.db"}"

[cli.identities]
{getpass.getuser()} = ["alice"]

[environments.{tier}]
tier = "{tier}"
database_url_env = "ROLLBOT_MIGRATE_URL"
migrations_dir = "{migrations}"
backups = "{tmp_path / "backups"}"

[environments.{tier}.commands]
workdir = "{tmp_path}"
timeout_seconds = 60
{command}
"""
    )
    return path


def tracking_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM drizzle.__drizzle_migrations").fetchone()
    assert row is not None
    return int(row[0])


def snapshots(tmp_path: Path) -> list[str]:
    folder = tmp_path / "backups"
    return (
        sorted(p.name for p in folder.glob("snapshot-*.manifest.json")) if folder.exists() else []
    )


def store_messages(config: Path) -> list[str]:
    bot = Rollbot.open(load_settings(config))
    try:
        with bot.store.session() as session:
            return [e.message for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    finally:
        bot.store.dispose()


@pytest.fixture
def folder_with_pending(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """vercel sample 0000..0008 where 0000..0007 are applied and 0008 (DROP COLUMN) is pending."""
    folder = sample_upto(tmp_path / "migrations", 9)
    apply_migrations(pg_url, read_journal(folder), upto=7)
    assert column_exists(pg_url, "Chat", "lastContext")
    monkeypatch.setenv("ROLLBOT_MIGRATE_URL", pg_url)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    return folder


class FakeSlack:
    """A local stand-in for slack.com/api that records chat.postMessage calls."""

    def __init__(self) -> None:
        self.posts: list[dict[str, list[str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.path.endswith("/chat.postMessage"):
                    form = (
                        {k: [str(v)] for k, v in json.loads(body).items()}
                        if body.startswith("{")
                        else parse_qs(body)
                    )
                    outer.posts.append(form)
                payload = json.dumps({"ok": True, "ts": "1.0"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSlack:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-secret-token")
        monkeypatch.setenv("ROLLBOT_SLACK_API_URL", slack.url)
        yield slack


def test_failing_migrate_command_passes_exit_code_and_writes_audit_lines(
    tmp_path: Path, folder_with_pending: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, folder_with_pending, "staging", "echo migrating now; exit 3")
    code = main(["--config", str(config), "migrate", "--env", "staging"])
    out = capsys.readouterr().out
    assert code == 3
    assert "migrating now" in out
    # Staging: the DROP COLUMN finding is shown but does not block.
    assert "BLOCKING 0008_flat_forgotten_one.sql:1: ban-drop-column" in out
    lines = (folder_with_pending / "audit.log").read_text().splitlines()
    assert [line.split(" - ", 1)[1].split(":")[0] for line in lines] == [
        "Migration started",
        "Migration failed",
    ]
    assert lines[0].endswith("Migration started: 0008_flat_forgotten_one")
    assert "(exit 3 after" in lines[1]
    assert all(line[:20].endswith("Z") and line[4] == "-" for line in lines)
    assert len(snapshots(tmp_path)) == 1  # the verified pre-deploy snapshot
    messages = store_messages(config)
    assert "Migration started: 0008_flat_forgotten_one" in messages
    assert any(m.startswith("Migration failed: 0008_flat_forgotten_one (exit 3") for m in messages)


def test_builtin_applier_finishes_and_notifies_devops(
    tmp_path: Path,
    folder_with_pending: Path,
    pg_url: str,
    fake_slack: FakeSlack,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path, folder_with_pending, "staging")
    assert main(["--config", str(config), "migrate", "--env", "staging"]) == 0
    assert not column_exists(pg_url, "Chat", "lastContext")
    assert tracking_rows(pg_url) == 9
    lines = (folder_with_pending / "audit.log").read_text().splitlines()
    assert "Migration finished: 0008_flat_forgotten_one (" in lines[-1]
    texts = [p["text"][0] for p in fake_slack.posts]
    assert [p["channel"][0] for p in fake_slack.posts] == ["#devops-team", "#devops-team"]
    assert texts[0].startswith("[staging (staging)] Migration started: 0008_flat_forgotten_one")
    assert "Migration finished" in texts[1]
    out = capsys.readouterr().out
    assert "xoxb-test-secret-token" not in out
    # Nothing pending any more: a second run does nothing.
    assert main(["--config", str(config), "migrate", "--env", "staging"]) == 0
    assert "no pending migrations" in capsys.readouterr().out


def test_production_refuses_a_pending_drop_column_before_anything_runs(
    tmp_path: Path, folder_with_pending: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "migrate-ran"
    config = write_config(tmp_path, folder_with_pending, "production", f"touch {marker}")
    code = main(["--config", str(config), "migrate", "--env", "production"])
    captured = capsys.readouterr()
    assert code == 2
    assert "BLOCKING 0008_flat_forgotten_one.sql:1: ban-drop-column" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "blocking risk finding" in err[0] and "--override-risk" in err[0]
    assert not marker.exists()
    assert column_exists(pg_url, "Chat", "lastContext")
    assert tracking_rows(pg_url) == 8
    assert snapshots(tmp_path) == []
    lines = (folder_with_pending / "audit.log").read_text().splitlines()
    assert len(lines) == 1 and "Migration refused: 0008_flat_forgotten_one" in lines[0]
    assert "Migration started" not in (folder_with_pending / "audit.log").read_text()


def test_production_override_is_audited_and_runs(
    tmp_path: Path, folder_with_pending: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, folder_with_pending, "production")
    code = main(
        [
            "--config",
            str(config),
            "migrate",
            "--env",
            "production",
            "--override-risk",
            "column unused since release 42",
        ]
    )
    assert code == 0, capsys.readouterr()
    assert not column_exists(pg_url, "Chat", "lastContext")
    lines = (folder_with_pending / "audit.log").read_text().splitlines()
    assert (
        "Risk override by alice for 0008_flat_forgotten_one: column unused since release 42"
        in lines[0]
    )
    assert "ban-drop-column" in lines[0]
    assert "Migration started" in lines[1] and "Migration finished" in lines[2]
    assert len(snapshots(tmp_path)) == 1
    override = [m for m in store_messages(config) if m.startswith("Risk override")]
    assert override and "release 42" in override[0]


def _running(argv: list[str]) -> list[int]:
    """PIDs of live (not zombie) processes whose command line is exactly ``argv``."""
    wanted = ("\0".join(argv) + "\0").encode()
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if (proc / "cmdline").read_bytes() == wanted:
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in {"Z", "X"}:
                    pids.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue  # not a process, or it ended while we looked
    return pids


def test_timeout_kills_the_command_group_and_returns_124(tmp_path: Path) -> None:
    """The backgrounded ``sleep`` keeps the output pipe open, so the streaming ends only
    because the whole group is killed; checked by the sleep being gone, not by a stopwatch."""
    from bot.shell import TIMEOUT_EXIT, run_streaming

    sleeper = ["sleep", f"{300 + uuid.uuid4().int % 1000 / 1000:.3f}"]  # unique: ours alone
    lines: list[str] = []
    try:
        code = run_streaming(
            f"echo begin; {' '.join(sleeper)} & wait",
            tmp_path,
            2.0,
            {"PATH": "/usr/bin:/bin"},
            lines.append,
        )
        assert code == TIMEOUT_EXIT and lines == ["begin"]
        wait_until(lambda: not _running(sleeper), "the backgrounded sleep to be killed")
    finally:
        for pid in _running(sleeper):
            os.kill(pid, signal.SIGKILL)
    assert (
        run_streaming("kill -TERM $$", tmp_path, 10, {"PATH": "/usr/bin:/bin"}, lines.append) == 143
    )


def test_secrets_stay_out_of_output_and_audit_log(
    tmp_path: Path, folder_with_pending: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    password = urlsplit(pg_url).password
    assert password
    config = write_config(tmp_path, folder_with_pending, "staging", "echo url is $DATABASE_URL")
    assert main(["--config", str(config), "migrate", "--env", "staging"]) == 0
    captured = capsys.readouterr()
    assert "url is " in captured.out
    for text in (captured.out, captured.err, (folder_with_pending / "audit.log").read_text()):
        assert password not in text
    assert all(password not in m for m in store_messages(config))


def test_a_failing_devops_notice_never_fails_the_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.postgres.cluster import free_port
    from providers.slack_notify import notify_devops

    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    assert notify_devops("#devops-team", "hello") is False  # not configured
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("ROLLBOT_SLACK_API_URL", f"http://127.0.0.1:{free_port()}/api")
    assert notify_devops("#devops-team", "hello") is False  # nothing listens there
