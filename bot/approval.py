"""Approval policy per tier: who may approve, how many, and for how long.

Expiry is enforced here, where approvals are counted, not by a cleanup job: an
approval older than the tier's TTL simply stops counting. Approvals are bound
to a plan hash, so changing the method or its plan voids earlier approvals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.config import ApprovalsConfig, Tier
from bot.errors import ApprovalRefusedError
from bot.models import Approval


class GroupDirectory(Protocol):
    """Resolves a user-group id to its members (Slack: ``usergroups.users.list``)."""

    def members(self, group_id: str) -> set[str]: ...


class NoGroups:
    def members(self, group_id: str) -> set[str]:
        return set()


@dataclass(frozen=True)
class ApprovalPolicy:
    tier: Tier
    min_approvals: int
    requester_may_approve: bool
    ttl: timedelta
    users: tuple[str, ...]
    groups: tuple[str, ...]

    @classmethod
    def for_tier(cls, config: ApprovalsConfig, tier: Tier) -> ApprovalPolicy:
        t = config.for_tier(tier)
        users = t.users if t.users is not None else config.users
        groups = t.groups if t.groups is not None else config.groups
        return cls(
            tier=tier,
            min_approvals=t.min_approvals,
            requester_may_approve=t.requester_may_approve and tier != "production",
            ttl=timedelta(minutes=t.ttl_minutes),
            users=tuple(users),
            groups=tuple(groups),
        )

    @property
    def restricted(self) -> bool:
        return bool(self.users or self.groups)

    def may_approve(self, approver: str, directory: GroupDirectory) -> bool:
        if not self.restricted or approver in self.users:
            return True
        return any(approver in directory.members(g) for g in self.groups)

    def check(self, *, approver: str, requester: str, directory: GroupDirectory) -> None:
        """Raise ApprovalRefusedError with the reason if ``approver`` may not approve."""
        if approver == requester and not self.requester_may_approve:
            raise ApprovalRefusedError(
                f"{approver} requested this rollback and cannot approve it in {self.tier}; "
                "another approver is needed"
            )
        if not self.may_approve(approver, directory):
            raise ApprovalRefusedError(
                f"{approver} is not an approver for {self.tier} (approvers: {self.describe()})"
            )

    def describe(self) -> str:
        """Who may approve in this tier, for people reading a refusal."""
        if not self.restricted:
            return f"anyone, in {self.tier}"
        who = ", ".join([*self.users, *(f"group {g}" for g in self.groups)])
        return f"{who}, in {self.tier}"

    def valid(
        self, approvals: Iterable[Approval], plan_hash: str | None, now: datetime
    ) -> list[Approval]:
        """Approvals that still count: same plan, not expired, one per approver."""
        seen: dict[str, Approval] = {}
        for a in approvals:
            if a.plan_hash == plan_hash and a.expires_at > now:
                seen.setdefault(a.approver, a)
        return list(seen.values())

    def satisfied(
        self, approvals: Sequence[Approval], plan_hash: str | None, now: datetime
    ) -> bool:
        return len(self.valid(approvals, plan_hash, now)) >= self.min_approvals
