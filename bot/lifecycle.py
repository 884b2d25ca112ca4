"""The incident and step state machines.

Illegal transitions are refused with a reason and change nothing; the allowed
moves are data, so adapters can show only the buttons that make sense.
"""

from __future__ import annotations

from enum import StrEnum

from bot.errors import IllegalTransitionError


class State(StrEnum):
    OPENED = "opened"
    TRIAGED = "triaged"
    METHOD_CHOSEN = "method_chosen"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    VERIFYING = "verifying"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"
    FAILED = "failed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.OPENED: frozenset({State.TRIAGED, State.CANCELLED}),
    State.TRIAGED: frozenset({State.METHOD_CHOSEN, State.CANCELLED}),
    State.METHOD_CHOSEN: frozenset({State.METHOD_CHOSEN, State.AWAITING_APPROVAL, State.CANCELLED}),
    State.AWAITING_APPROVAL: frozenset({State.RUNNING, State.METHOD_CHOSEN, State.CANCELLED}),
    # back to awaiting approval: re-running an interrupted destructive step needs a fresh one
    State.RUNNING: frozenset({State.VERIFYING, State.FAILED, State.AWAITING_APPROVAL}),
    State.VERIFYING: frozenset({State.RESOLVED, State.FAILED}),
    State.FAILED: frozenset({State.METHOD_CHOSEN, State.RESOLVED, State.CANCELLED}),
    State.RESOLVED: frozenset(),
    State.CANCELLED: frozenset(),
}
OPEN_STATES = frozenset(s for s in State if s not in (State.RESOLVED, State.CANCELLED))


# What people read: a state in words, never the enum value.
STATE_WORDS: dict[State, str] = {
    State.OPENED: "still being triaged",
    State.TRIAGED: "triaged and waiting for a method to be chosen",
    State.METHOD_CHOSEN: "planned but not yet sent for approval",
    State.AWAITING_APPROVAL: "waiting for approval",
    State.RUNNING: "running its plan",
    State.VERIFYING: "being verified after its plan ran",
    State.RESOLVED: "resolved",
    State.CANCELLED: "cancelled",
    State.FAILED: "failed",
}


def in_words(state: str | State) -> str:
    return STATE_WORDS[State(state)]


def check_transition(ref: str, current: str, target: State, action: str) -> None:
    """Raise IllegalTransitionError (with the states that would allow it, in words) or return."""
    cur = State(current)
    if target in TRANSITIONS[cur]:
        return
    allowed_from = [s for s in State if target in TRANSITIONS[s]]
    raise IllegalTransitionError(
        f"cannot {action} {ref}: it is {in_words(cur)}"
        + (
            f" (possible only when it is {' or '.join(in_words(s) for s in allowed_from)})"
            if allowed_from
            else ""
        )
    )


class StepStatus(StrEnum):
    PENDING = "pending"  # planned, waiting for approval / its turn
    QUEUED = "queued"  # approved, ready to be claimed by an executor
    RUNNING = "running"  # claimed; exactly one executor owns it
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # found running after a crash: a person decides
    WAITING = "waiting"  # a person does it outside rollbot, then says it is done
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


STEP_DONE = frozenset({StepStatus.SUCCEEDED, StepStatus.SKIPPED})
