"""Steps: every action rollbot takes is a Step with ``plan()`` and ``run()``.

``plan()`` is the human-readable preview shown before approval (target, restore
point, what data may be lost, estimated duration); ``run()`` does the work and
reports progress. Step kinds are registered by name so a persisted step row
(kind + JSON params) can be rebuilt in any process. Providers register their
own kinds (``postgres.restore``, ...); the core only knows the protocol.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from bot.config import EnvironmentConfig, Settings
from bot.errors import RollbotError
from bot.redact import redact
from bot.shared_reads import SharedReads
from bot.shell import TIMEOUT_EXIT, command_environment, run_streaming

Reporter = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """What a step will do, shown to people before they approve it."""

    title: str
    target: str
    action: str
    data_loss: str = "none"
    restore_point: str | None = None
    estimated: str | None = None
    details: tuple[str, ...] = ()
    files: tuple[tuple[str, str], ...] = ()  # (name, full text) too long to show inline

    def lines(self) -> list[str]:
        out = [f"{self.title}", f"  target: {self.target}", f"  action: {self.action}"]
        if self.restore_point:
            out.append(f"  restore point: {self.restore_point}")
        out.append(f"  data that may be lost: {self.data_loss}")
        if self.estimated:
            out.append(f"  estimated duration: {self.estimated}")
        out += [f"  - {d}" for d in self.details]
        return [redact(line) for line in out]

    def text(self) -> str:
        return "\n".join(self.lines())


@dataclass(frozen=True)
class RestoreSource:
    """One thing a restore step can restore from, for a person to pick (``sources(ctx)``)."""

    name: str  # what the step's ``snapshot`` option takes
    label: str  # one line: time, size, source database, migrations head, purpose, incident
    chosen: bool = False  # the one the current plan restores
    warning: str | None = None  # e.g. a safety snapshot of the state rollbot replaced


@dataclass(frozen=True)
class SafetySnapshot:
    """What a step declares when it took a verified copy of the state a later destructive
    step replaces; the executor's safety rule reads only this, never a provider's name."""

    name: str
    where: str  # a backups location, a branch, a database: whatever finds it again

    def as_result(self) -> dict[str, Any]:
        return {"safety": {"name": self.name, "where": self.where, "verified": True}}


def declares_safety(result: dict[str, Any] | None) -> bool:
    """Did a finished step's stored result declare a verified safety snapshot?"""
    safety = (result or {}).get("safety")
    return isinstance(safety, dict) and safety.get("verified") is True


@dataclass(frozen=True)
class DatabaseTarget:
    """Where the environment's database lives after a step moved it (a new branch, a new
    instance, a new connection string): the verify step that follows checks *this*.

    ``ref`` names it for its provider (a branch id, an instance id), never a secret; a
    connection string is referenced by the environment variable holding it (``url_env``).
    """

    label: str  # for people: "Neon branch restored-20261202-101500 (br-...)"
    ref: dict[str, str] = field(default_factory=dict)
    url_env: str | None = None

    def as_result(self) -> dict[str, Any]:
        return {"database_target": {"label": self.label, "ref": self.ref, "url_env": self.url_env}}

    @classmethod
    def from_result(cls, result: dict[str, Any] | None) -> DatabaseTarget | None:
        data = (result or {}).get("database_target")
        if not isinstance(data, dict) or not data.get("label"):
            return None
        return cls(str(data["label"]), dict(data.get("ref") or {}), data.get("url_env"))


@dataclass(frozen=True)
class StepResult:
    ok: bool
    summary: str
    data: dict[str, Any] = field(default_factory=dict)
    safety: SafetySnapshot | None = None  # set only after the copy was verified
    target: DatabaseTarget | None = None  # set when the database now lives elsewhere
    # Set by a step a person finishes outside rollbot (e.g. "update DATABASE_URL and
    # redeploy"): what they are to do. The step waits until someone marks it done.
    waits_for_person: str | None = None

    def stored(self) -> dict[str, Any]:
        """What the step row keeps: summary, data and the declarations (only when ok)."""
        out = {"summary": self.summary, **self.data}
        if self.ok and self.safety is not None:
            out.update(self.safety.as_result())
        if self.ok and self.target is not None:
            out.update(self.target.as_result())
        return out


@dataclass
class StepContext:
    """What a running step may use: its environment, a progress reporter, an audit hook."""

    incident_id: int
    settings: Settings
    environment: EnvironmentConfig
    report: Reporter
    audit: Callable[[str, str, dict[str, Any]], None]
    shared: dict[str, Any] = field(default_factory=dict)  # earlier steps' results by kind
    results: list[dict[str, Any]] = field(default_factory=list)  # ... in step order
    # What this step recorded of an external operation before a restart (see ``External``).
    external: dict[str, Any] = field(default_factory=dict)
    store_external: Callable[[dict[str, Any]], None] = lambda _data: None
    # The incident's ref, environment, tier, requester and method, for the team's templates.
    facts: dict[str, str] = field(default_factory=dict)
    # Set while a card previews several methods: what their plans read once (see SharedReads).
    reads: SharedReads | None = None

    def heartbeat(self) -> None:
        """Called by long steps; the executor refreshes the step's lease."""

    def read_once(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, or what it gave earlier in the same render."""
        return compute() if self.reads is None else self.reads.value(key, compute)

    def opened(
        self, key: Hashable, open_: Callable[[], AbstractContextManager[T]]
    ) -> AbstractContextManager[T]:
        """A resource of the step's own, or the one the render's other plans share."""
        return open_() if self.reads is None else nullcontext(self.reads.resource(key, open_))

    def has_safety_snapshot(self) -> bool:
        return any(declares_safety(r) for r in self.results)

    def declared_target(self) -> DatabaseTarget | None:
        """Where an earlier step of this incident said the database now lives, if it moved."""
        for result in reversed(self.results):
            target = DatabaseTarget.from_result(result)
            if target is not None:
                return target
        return None

    def record_intent(self, **intent: Any) -> None:
        """Before sending a mutation: what it will create, so a crash can say where to look."""
        self.external = {"intent": intent}
        self.store_external(self.external)

    def record_sent(self, **data: Any) -> None:
        """Right after the mutation was accepted: its operation ids and what it created. From
        now on a restart resumes (``Step.resume``) instead of sending it again."""
        self.external = {**self.external, **data, "sent": True}
        self.store_external(self.external)


class Step(Protocol):
    """A unit of work. ``destructive`` steps need approval; unless they declare
    ``safety_snapshot = "own"`` (they take one themselves) or ``"not_applicable"``
    (e.g. ending a blocking backend, where a dump would hang on the same lock), the
    executor refuses them until an earlier step produced a verified safety snapshot.
    Optional ``pin(ctx) -> params`` resolves choices when the plan is made. Optional
    ``after_interruption(ctx, remove) -> lines`` removes (or, when ``remove`` is False,
    only lists) what a crash mid-step left behind, for the person who decides next.
    Optional ``sources(ctx) -> list[RestoreSource]`` lists what a restore step could
    restore from, so people can pick another snapshot (option ``snapshot``) or a restore
    time (option ``restore_to``). Optional ``resume(ctx) -> StepResult`` continues a step
    whose worker died after ``ctx.record_sent``: it polls what was sent (``ctx.external``)
    and never sends it again."""

    kind: ClassVar[str]
    destructive: ClassVar[bool]

    def plan(self, ctx: StepContext) -> Plan: ...

    def run(self, ctx: StepContext) -> StepResult: ...


StepFactory = Callable[..., Step]
_REGISTRY: dict[str, type] = {}


def register_step(cls: type) -> type:
    """Class decorator: make a step kind constructible from its persisted params."""
    _REGISTRY[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def build_step(kind: str, params: dict[str, Any]) -> Step:
    try:
        cls = _REGISTRY[kind]
    except KeyError:
        raise RollbotError(f"step kind {kind!r} is not available in this rollbot build") from None
    return cls(**params)


def registered_kinds() -> set[str]:
    return set(_REGISTRY)


COMMAND_NAMES = ("generate", "migrate", "integration_tests", "app_rollback")


@dataclass(frozen=True)
class CommandRun:
    code: int
    seconds: float
    timeout: int
    tail: list[str]

    def said(self, what: str) -> str:
        if self.code == TIMEOUT_EXIT and self.seconds >= self.timeout:
            return f"{what} timed out after {self.timeout}s"
        return f"{what} exited {self.code} after {self.seconds:.1f}s"


def run_command(
    ctx: StepContext, shell: str, variables: dict[str, str], tail_lines: int = 20
) -> CommandRun:
    """A team command in its own process group (a timeout ends all of it), in the
    environment's workdir; the redacted tail of its output reported as it arrives."""
    env = ctx.environment
    tail: deque[str] = deque(maxlen=tail_lines)

    def on_line(line: str) -> None:
        tail.append(redact(line))
        ctx.report("\n".join(tail))
        ctx.heartbeat()

    started = time.monotonic()
    timeout = env.commands.timeout_seconds
    code = run_streaming(shell, env.commands.workdir, timeout, variables, on_line)
    return CommandRun(code, time.monotonic() - started, timeout, list(tail))


@register_step
@dataclass
class CommandStep:
    """Run one of the team's configured commands (never text typed in chat).

    The command runs in its own process group so a timeout ends all of it; the
    tail of its output is reported as it arrives.
    """

    command: str
    tail_lines: int = 20
    kind: ClassVar[str] = "command"
    destructive: ClassVar[bool] = False

    def _shell(self, env: EnvironmentConfig) -> str:
        if self.command not in COMMAND_NAMES:
            raise RollbotError(
                f"unknown command {self.command!r}; valid: {', '.join(COMMAND_NAMES)}"
            )
        value = getattr(env.commands, self.command)
        if not value:
            raise RollbotError(
                f"environment {env.name!r} has no '{self.command}' command configured "
                f'([environments.{env.name}.commands] {self.command} = "...")'
            )
        return value

    def plan(self, ctx: StepContext) -> Plan:
        env = ctx.environment
        shell = (
            self._shell(env) if getattr(env.commands, self.command, None) else "(not configured)"
        )
        return Plan(
            title=f"Run the team's {self.command.replace('_', ' ')} command",
            target=f"{env.name} ({env.tier})",
            action=f"`{shell}` in {env.commands.workdir}, timeout {env.commands.timeout_seconds}s",
            data_loss="none by rollbot itself; depends on the command",
        )

    def run(self, ctx: StepContext) -> StepResult:
        env = ctx.environment
        shell = self._shell(env)
        ctx.audit(
            "command",
            f"Command started: {self.command}: {shell}",
            {"cwd": str(env.commands.workdir)},
        )
        ran = run_command(ctx, shell, command_environment(env), self.tail_lines)
        summary = ran.said(f"`{self.command}`")
        ctx.audit(
            "command",
            f"Command finished: {self.command}: exit {ran.code}",
            {"seconds": round(ran.seconds, 2)},
        )
        return StepResult(ran.code == 0, summary, {"exit_code": ran.code, "tail": ran.tail})


@register_step
@dataclass
class ManualStep:
    """A step a person does outside rollbot: it waits until someone says it is done
    (``StepResult.waits_for_person``), and who did is recorded."""

    title: str
    instructions: str
    kind: ClassVar[str] = "manual"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        return Plan(
            title=self.title,
            target=f"{ctx.environment.name} ({ctx.environment.tier})",
            action=f"a person does this: {self.instructions}",
        )

    def run(self, ctx: StepContext) -> StepResult:
        return StepResult(
            True, f"waits for a person: {self.instructions}", waits_for_person=self.instructions
        )
