"""What the drill measures: step timings (a ProgressSink) and per-method outcomes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.models import Incident, Step
from bot.redact import redact
from bot.steps import StepResult


@dataclass
class StepTiming:
    title: str
    kind: str
    seconds: float
    ok: bool
    summary: str = ""


@dataclass
class MethodOutcome:
    """One practised method: its incident, step timings and what verification found."""

    key: str
    title: str
    method_id: str
    environment: str
    tier: str
    expected_loss: str
    incident_ref: str = ""
    incident_state: str = ""
    setup: list[StepTiming] = field(default_factory=list)  # outside the incident
    steps: list[StepTiming] = field(default_factory=list)  # plan/approval + incident steps
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def verified(self) -> bool:
        return not self.problems and bool(self.checks)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def incident_steps(self) -> int:
        return sum(1 for s in self.steps if not s.kind.startswith(("core.", "drill.")))


class TimingSink:
    """Times each step of an incident as the executor runs it, and echoes one line per step."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.timings: list[StepTiming] = []
        self._started: dict[int, float] = {}
        self._echo = echo or (lambda _line: None)

    def step_started(self, incident: Incident, step: Step) -> None:
        self._started[step.id] = time.monotonic()

    def step_progress(self, incident: Incident, step: Step, text: str) -> None:
        pass

    def step_finished(self, incident: Incident, step: Step, result: StepResult) -> None:
        seconds = time.monotonic() - self._started.pop(step.id, time.monotonic())
        summary = redact(result.summary)
        self.timings.append(StepTiming(step.title, step.kind, seconds, result.ok, summary))
        mark = "ok" if result.ok else "FAILED"
        self._echo(f"    step {step.seq}: {step.title}: {seconds:.1f}s {mark}")
        if not result.ok:
            self._echo(f"      {summary}")
