"""Who may do what to an incident: declared once, checked in one place.

Every adapter action (a Slack button, a modal, a CLI command) maps to one
:class:`Action`; :data:`REQUIRED_ROLES` says which roles may perform it, in the
spirit of Grafana OnCall's per-step ``REQUIRED_PERMISSIONS``. The core calls
:func:`check` before it looks at anything else, so a refusal never depends on
the incident's state, and ``Rollbot._attempt`` audits it like any refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.errors import NotAuthorizedError


class Role(StrEnum):
    MEMBER = "member"  # an identified person: a verified Slack user or a CLI user
    REQUESTER = "requester"  # opened the incident
    APPROVER = "approver"  # may approve in the incident's tier (user list or user group)
    PARTICIPANT = "participant"  # the requester, or someone who has acted on the incident


class Action(StrEnum):
    OPEN = "open an incident"
    STATUS = "list open incidents"
    ANSWER = "answer the decision tree"
    CHOOSE = "choose a method"
    REQUEST_APPROVAL = "request approval"
    APPROVE = "approve"
    RUN = "run the plan"
    RETRY_STEP = "retry an interrupted step"
    SKIP_STEP = "skip an interrupted step"
    ABANDON_STEP = "abandon an interrupted step"
    CONFIRM_STEP = "mark a person's step done"
    TICK = "tick a checklist item"
    ROOT_CAUSE = "record the root cause"
    CANCEL = "cancel"
    RESOLVE = "resolve"
    UNDO = "undo a restore"
    ACKNOWLEDGE = "acknowledge the page"


_DRIVERS = frozenset({Role.REQUESTER, Role.APPROVER})
_ON_THE_INCIDENT = frozenset({Role.PARTICIPANT, Role.APPROVER})

REQUIRED_ROLES: dict[Action, frozenset[Role]] = {
    Action.OPEN: frozenset({Role.MEMBER}),
    Action.STATUS: frozenset({Role.MEMBER}),
    Action.ANSWER: _DRIVERS,
    Action.CHOOSE: _DRIVERS,
    Action.UNDO: _DRIVERS,
    Action.REQUEST_APPROVAL: _DRIVERS,
    # Approving also passes the tier's policy (never the requester in production).
    Action.APPROVE: frozenset({Role.APPROVER}),
    Action.RUN: _DRIVERS,
    # Retrying a destructive step also needs a fresh approval of the re-run.
    Action.RETRY_STEP: _DRIVERS,
    Action.SKIP_STEP: _DRIVERS,
    Action.ABANDON_STEP: _ON_THE_INCIDENT,
    # Whoever did the work (updated DATABASE_URL, redeployed) may be any participant.
    Action.CONFIRM_STEP: _ON_THE_INCIDENT,
    Action.TICK: _ON_THE_INCIDENT,
    Action.ROOT_CAUSE: _ON_THE_INCIDENT,
    Action.CANCEL: _ON_THE_INCIDENT,
    Action.RESOLVE: _ON_THE_INCIDENT,
    # Whoever PagerDuty woke up may not have touched the incident yet; stopping the
    # paging changes nothing in the database and is audited.
    Action.ACKNOWLEDGE: frozenset({Role.MEMBER}),
}


@dataclass(frozen=True)
class Standing:
    """What one person is to one incident (computed by the core from its store).

    ``approvers`` describes who holds the approver role, for the refusal message.
    """

    actor: str
    requester: bool
    approver: bool
    participant: bool
    approvers: str = ""

    def roles(self) -> set[Role]:
        roles = {Role.MEMBER}
        if self.requester:
            roles.add(Role.REQUESTER)
        if self.approver:
            roles.add(Role.APPROVER)
        if self.requester or self.participant:
            roles.add(Role.PARTICIPANT)
        return roles

    def describe(self, role: Role) -> str:
        return {
            Role.MEMBER: "a workspace member",
            Role.REQUESTER: "the requester",
            Role.APPROVER: f"an approver ({self.approvers or 'anyone'})",
            Role.PARTICIPANT: "someone already working on the incident",
        }[role]


def check(action: Action, standing: Standing, ref: str) -> None:
    """Raise :class:`NotAuthorizedError` unless ``standing`` holds a role ``action`` needs."""
    needed = REQUIRED_ROLES[action]
    if standing.roles() & needed:
        return
    who = " or ".join(standing.describe(r) for r in sorted(needed))
    raise NotAuthorizedError(f"{standing.actor} may not {action.value} in {ref}: only {who} may")
