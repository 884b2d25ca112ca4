"""Every Slack interaction rollbot registers, beside the core action (and so the roles) it needs.

The core checks the roles (``bot.authz.REQUIRED_ROLES``) when it acts; this
table is where the Slack side declares which core action each action id and
view means, so nothing reaches the core without a declared requirement
(``tests/slack/test_authorization.py`` walks what the app registers against it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.authz import Action


@dataclass(frozen=True)
class Interaction:
    """One kind of click or submission: its inbox action name and the core action it needs."""

    name: str
    requires: Action
    what: str  # how a person would name it ("your click on Run")


# Action ids are "rb_<verb>:<suffix>"; a suffix entry ("rb_step:retry") wins over its verb.
BUTTONS: dict[str, Interaction] = {
    "rb_answer": Interaction("answer", Action.ANSWER, "answer"),
    "rb_environment": Interaction("environment", Action.ANSWER, "choice of environment"),
    "rb_choose": Interaction("choose", Action.CHOOSE, "choice of method"),
    "rb_request_approval": Interaction(
        "request_approval", Action.REQUEST_APPROVAL, "approval request"
    ),
    "rb_approve": Interaction("approve", Action.APPROVE, "approval"),
    "rb_run": Interaction("run", Action.RUN, "click on Run"),
    "rb_step:retry": Interaction("step", Action.RETRY_STEP, "Retry"),
    "rb_step:skip": Interaction("step", Action.SKIP_STEP, "Skip"),
    "rb_step:abandon": Interaction("step", Action.ABANDON_STEP, "Abandon"),
    "rb_step:done": Interaction("step", Action.CONFIRM_STEP, "Done"),
    "rb_tick": Interaction("tick", Action.TICK, "checklist tick"),
    "rb_source:snapshot": Interaction("source", Action.CHOOSE, "choice of snapshot"),
    "rb_source:time": Interaction("source", Action.CHOOSE, "choice of restore time"),
    "rb_root_cause": Interaction("root_cause_open", Action.ROOT_CAUSE, "Root cause button"),
    "rb_resolve": Interaction("resolve", Action.RESOLVE, "Resolve"),
    "rb_cancel": Interaction("cancel", Action.CANCEL, "Cancel"),
    "rb_undo": Interaction("undo", Action.UNDO, "Undo restore"),
    "rb_ack": Interaction("acknowledge", Action.ACKNOWLEDGE, "Acknowledge page"),
}
VIEWS: dict[str, Interaction] = {
    "rb_root_cause": Interaction("root_cause_submit", Action.ROOT_CAUSE, "root cause"),
}
ACTION_ID = re.compile(r"^rb_[a-z_]+(:.*)?$")


def button(action_id: str) -> Interaction | None:
    """The interaction an action id means, or None (not one of rollbot's buttons)."""
    verb, _, suffix = action_id.partition(":")
    exact = BUTTONS.get(f"{verb}:{suffix}")
    return exact or (BUTTONS.get(verb) if verb not in ("rb_step", "rb_source") else None)
