"""Typed, self-describing, sealed button values.

Every button carries the incident id, its argument (choice, method, step) and a
nonce minted when the message was rendered, as small JSON, sealed with an HMAC
(:class:`ValueSigner`) over the value and the button's action id: a value edited
on its way back (another incident, another step, a confirmation flag) or moved to
another button does not verify. The nonce plus the clicking user and the action
id make the idempotency key, so a double click or a Slack retry acts once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from bot.errors import RollbotError, TamperedRequestError

NOT_ROLLBOTS = "this button's data is not rollbot's; use the buttons in the incident thread"


@dataclass(frozen=True)
class ValueSigner:
    """Seals what rollbot renders, under a key kept in its state database."""

    key: bytes

    def seal(self, where: str, body: str) -> str:
        return hmac.new(self.key, f"{where}\n{body}".encode(), hashlib.sha256).hexdigest()[:24]

    def holds(self, where: str, body: str, mac: object) -> bool:
        return isinstance(mac, str) and hmac.compare_digest(self.seal(where, body), mac)


def _canonical(data: dict[str, object]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def new_nonce() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True)
class ActionValue:
    incident_id: int
    arg: str = ""
    nonce: str = ""
    step_id: int | None = None
    confirm: bool = False

    def encode(self, signer: ValueSigner | None = None, where: str = "") -> str:
        """The button value; sealed for the button ``where`` (its action id) by ``signer``."""
        data: dict[str, object] = {"i": self.incident_id, "n": self.nonce}
        if self.arg:
            data["a"] = self.arg
        if self.step_id is not None:
            data["s"] = self.step_id
        if self.confirm:
            data["c"] = 1
        if signer is not None:
            data["h"] = signer.seal(where, _canonical(data))
        return _canonical(data)

    @classmethod
    def decode(
        cls, raw: str | None, signer: ValueSigner | None = None, where: str = ""
    ) -> ActionValue:
        """The value of a click; with ``signer``, only if its seal holds for ``where``."""
        try:
            data = json.loads(raw or "")
            mac = data.pop("h", None)
            if signer is not None and not signer.holds(where, _canonical(data), mac):
                raise TamperedRequestError(
                    "this button's value was changed on its way back, or belongs to another "
                    "button; nothing was done. Use the buttons on the incident's card."
                )
            value = cls(
                incident_id=_row_id(data["i"]),
                arg=_text(data.get("a", "")),
                nonce=_text(data.get("n", "")),
                step_id=_row_id(data["s"]) if "s" in data else None,
                confirm=data.get("c") == 1,
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise RollbotError(NOT_ROLLBOTS) from None
        return value


def checklist_block_id(which: str, incident_id: int, signer: ValueSigner | None) -> str:
    mac = signer.seal(f"rb_tick:{which}", str(incident_id)) if signer else "unsealed"
    return f"rb_checklist:{which}:{incident_id}:{mac}"


def checklist_incident(block_id: str, which: str, signer: ValueSigner | None) -> int:
    """The incident a checklist's block id names, when rollbot sealed it (``signer``)."""
    parts = block_id.split(":")
    if len(parts) != 4 or parts[0] != "rb_checklist" or parts[1] != which:
        raise RollbotError("this checklist is not rollbot's; use the incident's card")
    if not parts[2].isdigit() or len(parts[2]) > 9:
        raise RollbotError("this checklist is not rollbot's; use the incident's card")
    if signer is not None and not signer.holds(f"rb_tick:{which}", parts[2], parts[3]):
        raise TamperedRequestError("this block was changed on its way back; nothing was done")
    return int(parts[2])


def source_block_id(incident_id: int, signer: ValueSigner | None) -> str:
    """The block of a card's snapshot and restore-time pickers, sealed like a checklist's."""
    return checklist_block_id("source", incident_id, signer)


def source_incident(block_id: str, signer: ValueSigner | None) -> int:
    return checklist_incident(block_id, "source", signer)


def _row_id(value: object) -> int:
    if type(value) is not int or not 0 < value < 2**31:
        raise ValueError("not a row id")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or len(value) > 100:
        raise ValueError("not a short text")
    return value


def idempotency_key(value: ActionValue, user: str, action_id: str) -> str:
    return f"click:{value.nonce}:{user}:{action_id}"
