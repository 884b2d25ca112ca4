"""Drives the served app as people would: commands, clicks on the buttons it rendered.

The driver never invents button values: it reads the latest blocks of the
incident card from the fake Slack and sends back exactly what Slack would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

from sqlalchemy import func, select

from bot.config import load_settings
from bot.models import AuditEvent, RefusedRequestCount
from bot.service import Rollbot
from tests.slack.fake_slack import CHANNELS, FakeSlack
from tests.slack.fake_socket import FakeSocketMode
from tests.slack.signing import (
    Reply,
    block_action_payload,
    command_body,
    event_body,
    form,
    post_signed,
)


class Transport(Protocol):
    def command(self, body: dict[str, str], **kw: Any) -> Reply: ...
    def interact(self, payload: dict[str, Any], **kw: Any) -> Reply: ...
    def event(self, body: dict[str, Any], retry_num: int | None = None, **kw: Any) -> Reply: ...


class HttpTransport:
    def __init__(self, base: str) -> None:
        self.url = base + "/slack/events"

    def command(self, body: dict[str, str], **kw: Any) -> Reply:
        return post_signed(self.url, urlencode(body), "application/x-www-form-urlencoded", **kw)

    def interact(self, payload: dict[str, Any], **kw: Any) -> Reply:
        return post_signed(self.url, form(payload), "application/x-www-form-urlencoded", **kw)

    def event(self, body: dict[str, Any], retry_num: int | None = None, **kw: Any) -> Reply:
        return post_signed(
            self.url, json.dumps(body), "application/json", retry_num=retry_num, **kw
        )


class SocketTransport:
    def __init__(self, ws: FakeSocketMode) -> None:
        self.ws = ws

    def _send(self, kind: str, payload: dict[str, Any], retry: int = 0) -> Reply:
        ack, elapsed = self.ws.send(kind, payload, retry_attempt=retry)
        return Reply(200, json.dumps(ack.get("payload") or {}), elapsed)

    def command(self, body: dict[str, str], **kw: Any) -> Reply:
        return self._send("slash_commands", dict(body))

    def interact(self, payload: dict[str, Any], **kw: Any) -> Reply:
        return self._send("interactive", payload)

    def event(self, body: dict[str, Any], retry_num: int | None = None, **kw: Any) -> Reply:
        return self._send("events_api", body, retry_num or 0)


@dataclass
class Card:
    incident_id: int
    channel: str
    ts: str
    thread_ts: str


def _walk(blocks: list[dict[str, Any]] | None) -> Iterator[dict[str, Any]]:
    for b in blocks or []:
        yield b
        yield from b.get("elements", [])


def blocks_text(blocks: list[dict[str, Any]] | None) -> str:
    return json.dumps(blocks or [], ensure_ascii=False)


class SlackDriver:
    def __init__(
        self,
        fake: FakeSlack,
        transport: Transport,
        config: Path,
        log: Path,
        state_url: str | None = None,
    ) -> None:
        self.fake = fake
        self.transport = transport
        self.config = config
        self.log = log
        self.state_url = state_url
        self._bot: Rollbot | None = None

    @property
    def bot(self) -> Rollbot:
        """The core over the served app's own store (read-only use in assertions)."""
        if self._bot is None:
            settings = load_settings(self.config)
            if self.state_url:
                settings = settings.model_copy(update={"database_url": self.state_url})
            self._bot = Rollbot.open(settings)
        return self._bot

    # ------------------------------------------------------------ sending
    def rollback(self, user: str, text: str, **kw: Any) -> Reply:
        return self.transport.command(command_body(user, text), **kw)

    def open_card(self, user: str, text: str) -> Card:
        reply = self.rollback(user, text)
        assert reply.status == 200, reply
        marker = text.split(maxsplit=1)[-1]
        return self.wait_card_for(marker)

    def wait_card_for(self, marker: str) -> Card:
        incidents = CHANNELS["#incidents"]

        def found(fake: FakeSlack) -> Card | None:
            for (channel, ts), msg in list(fake.messages.items()):
                if (
                    channel != incidents
                    or msg["thread_ts"]
                    or marker not in blocks_text(msg["blocks"])
                ):
                    continue
                for (c2, ts2), reply in list(fake.messages.items()):
                    if c2 == channel and reply["thread_ts"] == ts and reply["blocks"]:
                        m = re.search(r"\*INC-(\d+)\*", blocks_text(reply["blocks"]))
                        if m:
                            return Card(int(m.group(1)), channel, ts2, ts)
            return None

        return self.fake.wait_for(found, what=f"incident card for {marker!r}")

    def blocks(self, card: Card) -> list[dict[str, Any]]:
        return self.fake.messages[(card.channel, card.ts)]["blocks"] or []

    def element(self, card: Card, prefix: str) -> tuple[dict[str, Any], str]:
        for block in self.blocks(card):
            for e in block.get("elements", []) if block.get("type") == "actions" else []:
                if e.get("action_id", "").startswith(prefix):
                    return e, block["block_id"]
        raise AssertionError(
            f"no {prefix} element on the card: {blocks_text(self.blocks(card))[:2000]}"
        )

    def click_payload(self, user: str, card: Card, prefix: str) -> dict[str, Any]:
        element, block_id = self.element(card, prefix)
        action = {
            "type": "button",
            "action_id": element["action_id"],
            "block_id": block_id,
            "value": element["value"],
            "text": element["text"],
        }
        return block_action_payload(user, action, card.channel, card.ts, card.thread_ts)

    def click(self, user: str, card: Card, prefix: str, **kw: Any) -> Reply:
        reply = self.transport.interact(self.click_payload(user, card, prefix), **kw)
        assert reply.status == 200, reply
        return reply

    def tick(self, user: str, card: Card, which: str, item_ids: list[str]) -> Reply:
        element, block_id = self.element(card, f"rb_tick:{which}")
        options = [o for o in element["options"] if o["value"] in item_ids]
        action = {
            "type": "checkboxes",
            "action_id": element["action_id"],
            "block_id": block_id,
            "selected_options": options,
        }
        payload = block_action_payload(user, action, card.channel, card.ts, card.thread_ts)
        return self.transport.interact(payload)

    def mention(
        self,
        user: str,
        text: str,
        event_id: str,
        retry_num: int | None = None,
        channel: str = CHANNELS["#incidents"],
    ) -> Reply:
        event = {
            "type": "app_mention",
            "user": user,
            "text": f"<@U0ROLLBOT> {text}",
            "ts": f"{event_id[-6:]}.000100",
            "channel": channel,
            "event_ts": f"{event_id[-6:]}.000100",
        }
        return self.transport.event(event_body(event, event_id), retry_num=retry_num)

    # ------------------------------------------------------------ waiting
    def wait_card(self, card: Card, predicate: Callable[[str], bool], what: str) -> str:
        def check(fake: FakeSlack) -> str | None:
            text = blocks_text(fake.messages[(card.channel, card.ts)]["blocks"])
            return text if predicate(text) else None

        try:
            return self.fake.wait_for(check, what=f"card {what}")
        except AssertionError as exc:
            ephemerals = [c.args.get("text", "") for c in self.fake.calls_to("chat.postEphemeral")]
            raise AssertionError(
                f"{exc}\n--- ephemerals ---\n{ephemerals[-5:]}\n--- card now ---\n"
                f"{blocks_text(self.blocks(card))[:1500]}\n"
                f"--- serve log ---\n{self.log.read_text()[-4000:]}"
            ) from None

    def wait_state(self, card: Card, state: str) -> str:
        return self.wait_card(
            card,
            lambda t: f"*INC-{card.incident_id}*" in t and f"· {state.replace('_', ' ')}" in t,
            state,
        )

    def ephemerals(self, user: str, contains: str = "") -> list[str]:
        return [
            c.args.get("text", "")
            for c in self.fake.calls_to("chat.postEphemeral")
            if c.args.get("user") == user and contains in c.args.get("text", "")
        ]

    def wait_ephemeral(self, user: str, contains: str) -> str:
        return self.fake.wait_for(
            lambda f: (self.ephemerals(user, contains) or [None])[-1],
            what=f"ephemeral {contains!r}",
        )

    def refused_at_the_door(self) -> int:
        with self.bot.store.session() as session:
            return int(session.scalar(select(func.sum(RefusedRequestCount.count))) or 0)

    def audit(self, incident_id: int | None = None) -> list[AuditEvent]:
        with self.bot.store.session() as session:
            stmt = select(AuditEvent).order_by(AuditEvent.id)
            if incident_id is not None:
                stmt = stmt.where(AuditEvent.incident_id == incident_id)
            return list(session.scalars(stmt))
