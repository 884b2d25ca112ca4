"""A provider for the core's own tests: a platform that lives in memory.

It plans every runbook method as the core expects a provider to (a declared safety
snapshot before anything destructive, a destructive step that may move the database, a
verify of wherever it now lives), so the core's rules are tested without PostgreSQL or
any cloud. A "database" is a dict of named states; an external operation is an entry
that finishes after a number of polls, and each mutation sent is counted.
"""

from __future__ import annotations

import getpass
import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from bot.config import TIERS, EnvironmentConfig
from bot.errors import RollbotError
from bot.methods import StepSpec, register_provider
from bot.steps import (
    DatabaseTarget,
    Plan,
    SafetySnapshot,
    StepContext,
    StepResult,
    register_step,
)
from providers.postgres.plans import app_rollback_step


class FakeConfig(BaseModel):
    """``[environments.NAME.fake]``: which in-memory database is the environment's."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    database: str = "main"
    token_env: str | None = None

    def secret_env_vars(self) -> list[str]:
        return [self.token_env] if self.token_env else []


FAKE_DB_PASSWORD = "fake-db-pw-9f3c1e"  # a test secret that must never show


@dataclass
class FakePlatform:
    """What the fake platform holds: databases (name -> migrations head), copies,
    operations (id -> polls left) and every mutation it was sent."""

    databases: dict[str, str] = field(default_factory=lambda: {"main": "0002_bad"})
    copies: dict[str, str] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)
    mutations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    polls_per_operation: int = 2
    crash_on_poll: int | None = None  # the process "dies" (Crash) at this poll
    crash_after_send: bool = False  # ... right after a mutation was accepted
    polls: int = 0
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, action: str, **args: Any) -> str:
        with self.lock:
            op = f"op-{next(self._ids)}"
            self.mutations.append((action, args))
            self.operations[op] = self.polls_per_operation
        if self.crash_after_send:
            raise Crash("the worker died right after sending")
        return op

    def poll(self, op: str) -> bool:
        with self.lock:
            self.polls += 1
            if self.polls == self.crash_on_poll:
                raise Crash("the worker died while polling")
            if op not in self.operations:
                raise RollbotError(f"fake platform: no operation {op}")
            self.operations[op] = max(0, self.operations[op] - 1)
            return self.operations[op] == 0


class Crash(BaseException):
    """Ends a step the way SIGKILL would: no result recorded, the step row left running."""


PLATFORM = FakePlatform()


def reset_platform(**kw: Any) -> FakePlatform:
    """A fresh platform for one test (the step kinds read the module's ``PLATFORM``)."""
    global PLATFORM
    PLATFORM = FakePlatform(**kw)
    return PLATFORM


def _database(ctx: StepContext) -> str:
    return ctx.environment.section.database if ctx.environment.section else "main"


@register_step
@dataclass
class FakeSnapshot:
    kind: ClassVar[str] = "fake.snapshot"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        return Plan("Copy the database", _database(ctx), "copy it in memory")

    def run(self, ctx: StepContext) -> StepResult:
        name = f"copy-{len(PLATFORM.copies) + 1}"
        PLATFORM.copies[name] = PLATFORM.databases[_database(ctx)]
        return StepResult(True, f"copied as {name}", safety=SafetySnapshot(name, "fake copies"))


@register_step
@dataclass
class FakeSwitch:
    """Destructive: moves the environment to a new database at ``head``, through an
    external operation that is recorded before it is waited on (and resumed after a crash)."""

    head: str = "0001_good"
    kind: ClassVar[str] = "fake.switch"
    destructive: ClassVar[bool] = True

    def plan(self, ctx: StepContext) -> Plan:
        return Plan(
            "Switch to a database at the good head",
            _database(ctx),
            f"create a database at {self.head} and point the environment at it",
            data_loss="writes after the good head",
        )

    def run(self, ctx: StepContext) -> StepResult:
        new_name = f"restored-{ctx.incident_id}"
        ctx.record_intent(creates=new_name)
        op = PLATFORM.send("switch", new=new_name, head=self.head)
        ctx.record_sent(operation=op, creates=new_name)
        return self._wait(ctx)

    def resume(self, ctx: StepContext) -> StepResult:
        return self._wait(ctx)

    def _wait(self, ctx: StepContext) -> StepResult:
        op, new_name = ctx.external["operation"], ctx.external["creates"]
        while not PLATFORM.poll(op):
            ctx.heartbeat()
        PLATFORM.databases[new_name] = self.head
        target = DatabaseTarget(f"fake database {new_name}", {"database": new_name})
        return StepResult(True, f"switched to {new_name}", {"operation": op}, target=target)

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        creates = (ctx.external.get("intent") or {}).get("creates")
        return [f"look for fake database {creates}" if creates else "nothing was sent"]


@register_step
@dataclass
class FakeVerify:
    expected_head: str | None = None
    kind: ClassVar[str] = "fake.verify"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        return Plan("Verify the database", _database(ctx), "read its migrations head")

    def run(self, ctx: StepContext) -> StepResult:
        target = ctx.declared_target()
        name = target.ref["database"] if target else _database(ctx)
        head = PLATFORM.databases.get(name)
        ok = self.expected_head is None or head == self.expected_head
        summary = f"{name} is at {head}" + ("" if ok else f", expected {self.expected_head}")
        return StepResult(ok, summary, {"checked": name, "head": head})


@dataclass(frozen=True)
class FakeProvider:
    name: str = "fake"
    config_model: type[Any] | None = FakeConfig

    def steps_for(
        self, method_id: str, env: EnvironmentConfig, options: dict[str, Any]
    ) -> list[StepSpec]:
        verify = StepSpec("fake.verify", "Verify", {"expected_head": options.get("expect")})
        if method_id in ("pitr", "pg_dump_restore", "neon_branch", "dev_reset"):
            # ``into_new``: the restore lands in a new database the app must be pointed at.
            repoint = [StepSpec("deploy.repoint", "Point the app at it")]
            return [
                StepSpec("fake.snapshot", "Take a safety copy"),
                StepSpec("fake.switch", "Switch to the good state"),
                *(repoint if options.get("into_new") else []),
                verify,
            ]
        if method_id == "app_rollback":
            return [app_rollback_step(env), StepSpec("fake.verify", "Verify")]
        if method_id == "forward_fix":
            return [
                StepSpec("manual", "Apply the reverse", {"title": "Reverse", "instructions": "x"})
            ]
        raise RollbotError(f"method {method_id!r} has no step plan on the fake provider")

    def connection_url(self, env: EnvironmentConfig, target: DatabaseTarget) -> str:
        """Where a fake database is reached: with a password, as a real one would be."""
        name = target.ref["database"]
        return f"postgresql://app:{FAKE_DB_PASSWORD}@{name}.fake.internal:5432/app"


register_provider(FakeProvider())


FAKE_CONFIG = """
{database_url}audit_log = "audit.log"

[cli.identities]
{os_user} = ["alice", "bob", "carol", "mallory"]

[approvals]
users = ["alice", "bob", "carol"]

[approvals.production]
min_approvals = 1
requester_may_approve = false
ttl_minutes = 30
{environments}
"""

ENVIRONMENT = """
[environments.{tier}]
tier = "{tier}"
provider = "fake"
database_url_env = "ROLLBOT_TEST_{upper}_URL"

[environments.{tier}.fake]
database = "main"

[environments.{tier}.commands]
app_rollback = "{app_rollback}"
"""


def write_fake_config(
    directory: Path, state_url: str, app_rollback: str = "echo app rolled back"
) -> Path:
    """A rollbot.toml in ``directory`` whose three environments (development, staging,
    production) use the fake provider, each with an ``app_rollback`` command.

    A PostgreSQL state URL carries a password: it goes in ROLLBOT_DATABASE_URL (the
    caller sets it), never the file.
    """
    environments = "".join(
        ENVIRONMENT.format(tier=tier, upper=tier.upper(), app_rollback=app_rollback)
        for tier in TIERS
    )
    database_url = f'database_url = "{state_url}"\n' if state_url.startswith("sqlite") else ""
    path = directory / "rollbot.toml"
    path.write_text(
        FAKE_CONFIG.format(
            database_url=database_url, os_user=getpass.getuser(), environments=environments
        )
    )
    return path
