"""Typed, self-describing button values.

Every button carries the incident id, its argument (choice, method, step) and a
nonce minted when the message was rendered, as small JSON. The nonce plus the
clicking user and the action id make the idempotency key, so a double click or a
Slack retry of the same payload acts once.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from bot.errors import RollbotError


def new_nonce() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True)
class ActionValue:
    incident_id: int
    arg: str = ""
    nonce: str = ""
    step_id: int | None = None
    confirm: bool = False

    def encode(self) -> str:
        data: dict[str, object] = {"i": self.incident_id, "n": self.nonce}
        if self.arg:
            data["a"] = self.arg
        if self.step_id is not None:
            data["s"] = self.step_id
        if self.confirm:
            data["c"] = 1
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | None) -> ActionValue:
        try:
            data = json.loads(raw or "")
            return cls(
                incident_id=int(data["i"]),
                arg=str(data.get("a", "")),
                nonce=str(data.get("n", "")),
                step_id=int(data["s"]) if "s" in data else None,
                confirm=bool(data.get("c")),
            )
        except (ValueError, KeyError, TypeError):
            raise RollbotError(
                "this button's data is not rollbot's; use the buttons in the incident thread"
            ) from None


def idempotency_key(value: ActionValue, user: str, action_id: str) -> str:
    return f"click:{value.nonce}:{user}:{action_id}"
