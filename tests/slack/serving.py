"""rollbot served for real in a test: `rollbot serve` (and its worker) in its own process group.

Everything a served app emits (its log, its state database, its audit.log, the
fake Slack's record of its calls) is registered in :data:`EMITTED`, so the
secret scan at the end of the session reads all of it.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.slack.driver import HttpTransport, SlackDriver, SocketTransport
from tests.slack.fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.slack.fake_socket import FakeSocketMode
from tests.slack.signing import SIGNING_SECRET
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
REQUESTER, ALICE, BOB, MALLORY = "U0REQ", "U0ALICE", "U0BOB", "U0MALLORY"
DBA_GROUP = "S0DBAS"

CONFIG = """
{state}
audit_log = "{audit}"

[cli.identities]
{os_user} = ["{alice}", "{requester}"]

[approvals]
users = ["{alice}"]
groups = ["{group}"]

[approvals.production]
min_approvals = 1
requester_may_approve = false
ttl_minutes = 30

[environments.development]
tier = "development"
database_url_env = "ROLLBOT_SLACK_DEV_URL"
backups = "{backups}/development"

[environments.staging]
tier = "staging"
database_url_env = "ROLLBOT_SLACK_STAGING_URL"
backups = "{backups}/staging"

[environments.production]
tier = "production"
database_url_env = "ROLLBOT_SLACK_PROD_URL"
backups = "{backups}/production"

[environments.production.commands]
app_rollback = "echo app rolled back"
timeout_seconds = 60
"""


def write_slack_config(
    folder: Path, *, sqlite: bool = True, slack: dict[str, str] | None = None
) -> Path:
    """The Slack tests' config; ``sqlite=False`` leaves the state URL to $ROLLBOT_DATABASE_URL;
    ``slack``: settings of its ``[slack]`` table."""
    path = folder / "rollbot.toml"
    state = f'database_url = "sqlite:///{folder / "state.db"}"' if sqlite else ""
    table = "".join(f"{key} = {json.dumps(value)}\n" for key, value in (slack or {}).items())
    path.write_text(
        textwrap.dedent(
            CONFIG.format(
                state=state,
                audit=folder / "audit.log",
                backups=folder / "backups",
                alice=ALICE,
                group=DBA_GROUP,
                requester=REQUESTER,
                os_user=getpass.getuser(),
            )
        )
        + (f"\n[slack]\n{table}" if table else "")
    )
    return path


def served_env(fake: FakeSlack, prod_db: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_APP_TOKEN=APP_TOKEN,
        ROLLBOT_SLACK_API_URL=fake.url,
        ROLLBOT_SLACK_PROD_URL=prod_db,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@dataclass
class Served:
    """One `rollbot serve` process group (the acknowledging side and its worker)."""

    args: list[str]
    env: dict[str, str]
    folder: Path
    fake: FakeSlack
    port: int | None = None
    ws: FakeSocketMode | None = None
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.folder / "rollbot.toml"

    @property
    def log(self) -> Path:
        return self.logs[-1]

    def start(self) -> Served:
        log = self.folder / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "handlers.cli", "--config", str(self.config), *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.port is not None:
            wait_healthy(self.port, self.proc, log)
        if self.ws is not None:
            try:
                self.ws.wait_connected(60)
            except AssertionError:
                raise AssertionError(f"no Socket Mode connection:\n{tail(log)}") from None
        if "--no-worker" not in self.args:
            wait_until(lambda: self.worker_pid() is not None, f"the worker:\n{tail(log)}")
        return self

    def worker_pid(self) -> int | None:
        assert self.proc is not None
        kids = children(self.proc.pid)
        return kids[0] if kids else None

    def state_texts(self) -> list[str]:
        """Every row of the state database as text (or the dump taken when it stopped)."""
        dump = self.folder / "state-dump.json"
        try:
            texts = _database_texts(self.state_url)
            inbox = self.folder / "state.db-inbox"
            if self.state_url.startswith("sqlite") and inbox.exists():
                texts += _database_texts(f"sqlite:///{inbox}")
        except Exception:
            if not dump.exists():
                raise
            return list(json.loads(dump.read_text()))
        dump.write_text(json.dumps(texts))
        return texts

    @property
    def state_url(self) -> str:
        return self.env.get("ROLLBOT_DATABASE_URL") or f"sqlite:///{self.folder / 'state.db'}"

    def stop(self) -> None:
        """SIGTERM to the serve process and its worker (graceful), SIGKILL what is left
        after 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        signal_tree(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
        signal_tree(self.proc.pid, signal.SIGKILL)
        self.state_texts()  # kept for the secret scan, whatever happens to the database later

    def kill(self) -> None:
        """SIGKILL the serve process and its worker at once (a crash of the host's unit)."""
        assert self.proc is not None
        signal_tree(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def driver(self) -> SlackDriver:
        if self.port is not None:
            transport: HttpTransport | SocketTransport = HttpTransport(
                f"http://127.0.0.1:{self.port}"
            )
        else:
            assert self.ws is not None
            transport = SocketTransport(self.ws)
        return SlackDriver(
            self.fake, transport, self.config, self.log, self.env.get("ROLLBOT_DATABASE_URL")
        )


EMITTED: list[Served] = []


def serve(
    fake: FakeSlack,
    prod_db: str,
    folder: Path,
    mode: str = "http",
    *,
    sqlite: bool = True,
    extra_env: dict[str, str] | None = None,
    serve_args: tuple[str, ...] = (),
    slack: dict[str, str] | None = None,
) -> Served:
    """Start `rollbot serve` in ``mode`` ("http" or "socket") with the Slack test config."""
    from providers.postgres.cluster import free_port

    write_slack_config(folder, sqlite=sqlite, slack=slack)
    env = served_env(fake, prod_db, **(extra_env or {}))
    if mode == "http":
        port = free_port()
        args = ["serve", "--http", "--host", "127.0.0.1", "--port", str(port), *serve_args]
        served = Served(args, env, folder, fake, port=port)
    else:
        ws = FakeSocketMode().start()
        fake.ws_url = ws.url
        served = Served(["serve", "--socket", *serve_args], env, folder, fake, ws=ws)
    EMITTED.append(served)
    return served.start()


NOT_SCANNED = {"installation_secrets"}  # where rollbot keeps its own key, by design


def _database_texts(url: str) -> list[str]:
    from sqlalchemy import MetaData, create_engine, select

    from bot.store import normalise_url

    engine = create_engine(normalise_url(url), connect_args=_quick(url))
    texts = []
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                if table.name not in NOT_SCANNED:
                    rows = conn.execute(select(table))
                    texts += [f"{table.name}: {json.dumps(list(r), default=str)}" for r in rows]
    finally:
        engine.dispose()
    return texts


def _quick(url: str) -> dict[str, int]:
    return {"connect_timeout": 3} if url.startswith("postgres") else {}


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def signal_tree(pid: int, sig: signal.Signals) -> None:
    """``sig`` to the process group of ``pid`` and of each of its descendants, found before
    any is signalled: the worker leads a session (and group) of its own."""
    groups, todo = set(), [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(current))
        todo += children(current)
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)


def wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"rollbot serve exited:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"rollbot serve did not come up:\n{tail(log)}")


def tail(log: Path, n: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"
