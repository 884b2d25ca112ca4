"""Building blocks of the HTTP fuzz (``tests/slack/test_fuzz.py``).

A raw sender (any body, any headers, signed at send time), the *world* the fuzz
attacks (real incidents in several states, their full state, the real payloads of
their cards, a resolve confirmation and root-cause forms rollbot issued), and
hypothesis strategies that build requests from those payloads with one change
that must make rollbot refuse them, plus noise that must not matter.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import http.client
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from hypothesis import strategies as st
from pydantic import ValidationError

from bot.service import Rollbot
from handlers.slack.gate import MAX_BODY
from handlers.slack.metadata import ValueSigner
from handlers.slack.payloads import BlockActions, Identified, SlashCommand, ViewSubmission
from tests.slack.driver import Card
from tests.slack.serving import ALICE, BOB, MALLORY, REQUESTER
from tests.slack.signing import SIGNING_SECRET, block_action_payload, command_body

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
UNSIGNED = "0UNSIGNED"  # in every channel and user id that only unsigned requests name
OPENER = "U0FUZZOPENER"  # requested the victim opened without an environment
PEOPLE = (REQUESTER, ALICE, BOB, MALLORY, OPENER)
EPHEMERAL_TS = "1700000000.000100"  # the resolve confirmation's message (never a card)


# ---------------------------------------------------------------- sending
@dataclass
class Auth:
    """How a request is signed: ``good`` (fresh, right secret) or one way of getting it wrong."""

    kind: str = "good"
    secret: str = SIGNING_SECRET
    skew: int = 0  # seconds added to now for the timestamp
    raw_ts: str | None = None  # sent as the timestamp header, signed as it is
    signature: str | None = None  # sent as the signature header instead of the real one

    def headers(self, body: bytes) -> dict[str, str]:
        ts = self.raw_ts if self.raw_ts is not None else str(int(time.time()) + self.skew)
        signed = body + b" " if self.kind == "other_body" else body
        signed_ts = str(int(ts) + 1) if self.kind == "ts_mismatch" else ts
        mac = hmac.new(self.secret.encode(), b"v0:" + signed_ts.encode() + b":" + signed, "sha256")
        headers = {
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": self.signature or f"v0={mac.hexdigest()}",
        }
        if self.kind == "none":
            return {}
        if self.kind == "no_timestamp":
            del headers["X-Slack-Request-Timestamp"]
        if self.kind == "no_signature":
            del headers["X-Slack-Signature"]
        return headers


@dataclass
class Request:
    """One fuzz case: one HTTP request and the statuses it may get."""

    what: str
    body: bytes
    content_type: str | None = FORM
    auth: Auth = field(default_factory=Auth)
    method: str = "POST"
    path: str = "/slack/events"
    expect: frozenset[int] = frozenset({200, 400, 413})

    def __repr__(self) -> str:  # what hypothesis prints for a failing case
        body = self.body if len(self.body) <= 3000 else self.body[:3000] + b"...(truncated)"
        return (
            f"Request({self.what!r}, {self.method} {self.path}, content_type="
            f"{self.content_type!r}, auth={self.auth!r}, expect={sorted(self.expect)}, "
            f"{len(self.body)} bytes: {body!r})"
        )


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    elapsed: float


def send(base: str, request: Request, timeout: float = 10.0) -> Response:
    """``request`` to the served app at ``base`` (http://host:port), signed now.

    Written to the socket by hand: the door may answer (a 413) and close before it has
    read a big body, which is right, and the answer is read all the same.
    """
    parts = urlsplit(base)
    headers = {"Host": parts.netloc, "Connection": "close", **request.auth.headers(request.body)}
    if request.content_type is not None:
        headers["Content-Type"] = request.content_type
    headers["Content-Length"] = str(len(request.body))
    head = f"{request.method} {request.path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    start = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered already
            sock.sendall(head.encode("latin-1") + b"\r\n" + request.body)
        resp = http.client.HTTPResponse(sock, method=request.method)
        resp.begin()
        return Response(resp.status, resp.read(), time.perf_counter() - start)


# ---------------------------------------------------------------- the world
@dataclass(frozen=True)
class Button:
    """An interactive element rollbot rendered, as Slack sends it back when clicked."""

    incident_id: int
    card: Card
    action: dict[str, Any]
    owner: str | None = None  # an ephemeral button: the one person it was given to

    @property
    def is_tick(self) -> bool:
        return str(self.action["action_id"]).startswith("rb_tick:")

    def payload(self, user: str) -> dict[str, Any]:
        action = copy.deepcopy(self.action)
        body = block_action_payload(
            user, action, self.card.channel, self.card.ts, self.card.thread_ts
        )
        if self.owner is not None:  # Slack sends no message for a click on an ephemeral
            del body["message"]
            body["container"] = {
                "type": "message",
                "message_ts": EPHEMERAL_TS,
                "channel_id": self.card.channel,
                "is_ephemeral": True,
            }
        return body


@dataclass(frozen=True)
class Modal:
    """A root-cause form rollbot opened for ``user`` on ``incident_id``."""

    incident_id: int
    user: str
    view: dict[str, Any]


@dataclass(repr=False)
class World:
    base: str
    signer: ValueSigner
    cards: dict[int, Card]
    buttons: list[Button]
    modals: list[Modal]
    tokens: list[str]  # every token rollbot issued in the world (forms, confirmations)
    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    unsigned_ids: set[str] = field(default_factory=set)

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing strategy
        return f"World(incidents={self.incident_ids}, {len(self.buttons)} buttons)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    @property
    def incident_ids(self) -> list[int]:
        return sorted(self.cards)

    @property
    def action_ids(self) -> list[str]:
        return sorted({str(b.action["action_id"]) for b in self.buttons})

    def seal(self, data: dict[str, Any], action_id: str) -> str:
        """``data`` sealed for ``action_id`` exactly as rollbot seals a button's value."""
        data = {k: v for k, v in data.items() if k != "h"}
        data["h"] = self.signer.seal(action_id, canonical(data))
        return canonical(data)


def canonical(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def incident_state(bot: Rollbot, incident_id: int) -> dict[str, Any]:
    """Everything a click could change about an incident (not its audit trail)."""
    inc = bot.get(incident_id)
    return {
        "state": inc.state,
        "environment": inc.environment,
        "answers": list(inc.answers),
        "method": inc.method,
        "plan_hash": inc.plan_hash,
        "root_cause": inc.root_cause,
        "notes": inc.notes,
        "closed_at": inc.closed_at,
        "chat": (inc.chat_channel, inc.chat_thread, inc.chat_message),
        "steps": [
            (s.seq, s.kind, s.status, s.attempt, s.started_at, s.finished_at) for s in inc.steps
        ],
        "approvals": [(a.approver, a.plan_hash, a.created_at, a.expires_at) for a in inc.approvals],
        "ticks": {k: (t.ticked, t.actor, t.at) for k, t in bot.ticks(incident_id).items()},
    }


def card_buttons(incident_id: int, card: Card, blocks: list[dict[str, Any]]) -> list[Button]:
    """Every element of a card, as the action Slack sends back for it."""
    found = []
    for block in blocks:
        if block.get("type") != "actions":
            continue
        for e in block.get("elements", []):
            action: dict[str, Any] = {
                "type": e["type"],
                "action_id": e["action_id"],
                "block_id": block["block_id"],
            }
            if e["type"] == "checkboxes":
                action["selected_options"] = [
                    {"text": o["text"], "value": o["value"]} for o in e["options"]
                ]
            else:
                action["value"], action["text"] = e["value"], e["text"]
            found.append(Button(incident_id, card, action))
    return found


# ---------------------------------------------------------------- basic strategies
SLACK_ID = st.from_regex(r"\A[A-Z0-9][A-Z0-9_]{1,31}\Z").filter(lambda s: "UNSIGNED" not in s)
ODD_IDS = st.sampled_from(
    ["", "U", "u0lower", "U" * 33, "U0 SPACE", "U0<script>", "U0\x00", "-U0", "U0ÄÖ", "U0\n"]
)
ODD_ID = ODD_IDS | st.text(max_size=40)
TS = st.from_regex(r"\A[0-9]{1,12}\.[0-9]{1,8}\Z")
ODD_TS = st.sampled_from(["", "1", "1.", ".1", "1700000000.0000001234", "1e9", "x.y"]) | st.text(
    max_size=20
)
LEAF = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JUNK = st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
SECRETISH = st.sampled_from(
    [
        "xoxb-123456789012-123456789012-abcdefghijklmnopqrstuvwx",
        "xoxp-1-2-3-abcdef",
        "xapp-1-A0-1-abcdef",
        "postgres://admin:hunter2@db.internal:5432/prod",
        "AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "password=hunter2 token=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        SIGNING_SECRET,
    ]
)
CONTROL = st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp"]), max_size=50)
HUGE = st.builds(  # past MAX_TEXT, past the model's 200,000, past the door's 512 KiB
    lambda s, n: (s * (n // len(s) + 1))[:n],
    st.text(min_size=1, max_size=4),
    st.integers(1, 250_000),
)
TEXT = st.one_of(
    st.text(max_size=200),
    SECRETISH,
    CONTROL,
    HUGE,
    st.builds(lambda a, b: a + b, SECRETISH, st.text(max_size=50)),
)
DEEP = st.builds(
    lambda opener, n: opener * n, st.sampled_from(["[", '{"a":', '{"i":']), st.integers(1, 200_000)
)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
PERSON = st.one_of(*[st.sampled_from(PEOPLE)] * 3, SLACK_ID)  # mostly people who may act


def status_for(body: dict[str, Any], raw: bytes) -> frozenset[int]:
    """What the door must answer a signed request carrying ``body`` (by payloads.py's models)."""
    if len(raw) > MAX_BODY:
        return frozenset({413})
    model: Any
    if "command" in body:
        model = SlashCommand
    elif body.get("type") == "block_actions":
        model = BlockActions
    elif body.get("type") == "view_submission":
        model = ViewSubmission
    else:
        return frozenset({200, 400})
    try:
        model.model_validate(body)
    except ValidationError:
        return frozenset({400})
    return frozenset({200})


def interactive(what: str, payload: dict[str, Any], as_json: bool) -> Request:
    if as_json:
        raw = json.dumps(payload).encode()
        return Request(what, raw, JSON, expect=status_for(payload, raw))
    raw = urlencode({"payload": json.dumps(payload)}).encode()
    return Request(what, raw, FORM, expect=status_for(payload, raw))


# ---------------------------------------------------------------- slash commands
SLASH_EXTRAS = [
    "team",
    "enterprise",
    "authorizations",
    "response_urls",
    "is_enterprise_install",
    "enterprise_id",
    "thread_ts",
    "is_ext_shared_channel",
    "x",
]


@st.composite
def slash_commands(draw: st.DrawFn) -> Request:
    """/rollback (or not) with any text, and fields missing, odd, duplicated or extra."""
    user, channel = draw(PERSON), draw(st.sampled_from(["C0INCIDENTS", "C0DEVOPS"]) | SLACK_ID)
    kind = draw(st.sampled_from(["any"] * 7 + ["environment", "empty"]))
    if kind == "environment":  # opens an incident when the rest is well formed
        env = draw(st.sampled_from(["production", "staging", "development", "prod", "PRODUCTION"]))
        text = f"{env} fuzz {draw(st.text(max_size=60) | SECRETISH)}"
    elif kind == "empty":
        text = draw(st.sampled_from(["", " ", "\n", "\t \u3000"]))
    else:
        text = draw(TEXT)
    fields: dict[str, Any] = command_body(user, text, channel)
    fields["trigger_id"] = draw(st.just(fields["trigger_id"]) | st.text(max_size=300))
    fields["command"] = draw(
        st.sampled_from(["/rollback"] * 6 + ["/ROLLBACK", "/other", "", "rollback", "/rollback "])
    )
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True)):
        if draw(st.booleans()):
            del fields[name]
        else:
            fields[name] = draw(ODD_ID | SLACK_ID)
    extras = draw(
        st.dictionaries(
            st.sampled_from(SLASH_EXTRAS),
            st.text(max_size=10),
            max_size=2,
        )
    )
    fields.update(extras)
    pairs = list(fields.items())
    pairs += draw(st.lists(st.tuples(st.sampled_from(sorted(fields) or ["x"]), ODD_ID), max_size=2))
    if draw(st.integers(0, 9)) == 0:  # as JSON: the door must check its types as strictly
        body = {k: draw(st.just(v) | JUNK) for k, v in fields.items()}
        raw = json.dumps(body).encode()
        return Request("slash command as JSON", raw, JSON, expect=status_for(body, raw))
    raw = urlencode(pairs).encode()
    # As the door reads a form: the first of each name, blank values dropped.
    first = {k: v[0] for k, v in parse_qs(raw.decode(), strict_parsing=bool(raw)).items()}
    return Request("slash command", raw, FORM, expect=status_for(first, raw))


# ---------------------------------------------------------------- block actions
SYNTHETIC_ACTION_IDS = [
    *[
        "rb_approve:go",
        "rb_run:go",
        "rb_cancel:go",
        "rb_resolve:go",
        "rb_resolve:confirm",
        "rb_step:retry",
        "rb_step:skip",
        "rb_step:abandon",
        "rb_root_cause:open",
        "rb_request_approval:go",
        "rb_choose:app_rollback",
        "rb_choose:pitr",
        "rb_answer:app_broken",
        "rb_answer:data_corruption",
        "rb_tick:before",
        "rb_tick:after",
        "rb_approve",
        "rb_approve:go:x",
        "rb_approve:GO",
        "RB_APPROVE:go",
        "rb_step",
        "rb_",
        "rb_unknown:go",
        "other_app_button",
    ],
    "rb_approve:go\n",
    "",
]


def _value_data(action: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(action["value"])
    assert isinstance(data, dict)
    return data


def _field_values(world: World, key: str, old: Any) -> st.SearchStrategy[Any]:
    ids = world.incident_ids
    specific = {
        "i": st.sampled_from([*ids, 0, -1, 2**31 - 1, 2**31, 2**63, -(2**63), 10**40])
        | st.integers()
        | st.sampled_from(["1", str(old), f"INC-{old}", None, True, 1.5, [old], {"i": old}]),
        "s": st.integers() | st.sampled_from([None, "1", 1.0, True, [1]]),
        "a": st.sampled_from(["app_rollback", "pitr", "retry", "skip", "abandon", "go", ""])
        | st.text(max_size=120)
        | JUNK,
        "c": st.sampled_from([1, True, "1", 2, 0, None, 1.0, [1]]),
        "n": st.sampled_from([*world.tokens, "", "0" * 12, str(old) + "x"])
        | st.text(max_size=80)
        | JUNK,
    }.get(key, JUNK)
    return specific.filter(lambda v: canonical(v) != canonical(old))


def _tamper_field(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    """Change, add or drop one field of the sealed value; the seal no longer holds."""
    action = p["actions"][0]
    data = _value_data(action)
    key = draw(st.sampled_from(["i", "s", "a", "c", "n", "x", "drop"]))
    if key == "drop":
        victim = draw(st.sampled_from(sorted(k for k in data if k != "h")))
        del data[victim]
        change = f"dropped {victim}"
    else:
        data[key] = draw(_field_values(world, key, data.get(key, "<absent>")))
        change = f"{key}={data[key]!r}"[:80]
    keep = draw(st.sampled_from(["keep h", "keep h", "drop h", "h of another button"]))
    if keep == "drop h":
        data.pop("h", None)
    elif keep == "h of another button":
        others = [o for o in world.buttons if "value" in o.action and o.action != b.action]
        data["h"] = _value_data(draw(st.sampled_from(others)).action).get("h")
    action["value"] = json.dumps(data, sort_keys=draw(st.booleans()))
    return f"value field {change}, {keep}"


def _tamper_seal(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    action = p["actions"][0]
    data = _value_data(action)
    old = data.get("h")
    new = draw(
        st.sampled_from(["drop", "", None, 0, "0" * 24, str(old).upper(), str(old)[:-1], f"{old}0"])
        | st.from_regex(r"\A[0-9a-f]{24}\Z")
        | JUNK
    )
    if new == "drop":
        del data["h"]
    else:
        if canonical(new) == canonical(old):
            new = f"{old}x"
        data["h"] = new
    action["value"] = json.dumps(data)
    return f"seal h={new!r}"[:80]


def _tamper_move(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    """The same value (or checklist) under another button's action id."""
    action = p["actions"][0]
    old = action["action_id"]
    action["action_id"] = draw(
        st.sampled_from(sorted({*world.action_ids, *SYNTHETIC_ACTION_IDS} - {old}))
    )
    if b.is_tick and draw(st.booleans()):  # and a value, but not the one of that very button
        values = [
            o.action["value"]
            for o in world.buttons
            if "value" in o.action
            and not (
                o.incident_id == b.incident_id and o.action["action_id"] == action["action_id"]
            )
        ]
        action["value"] = draw(st.sampled_from(values))
    return f"moved from {old} to {action['action_id']!r}"


def _tamper_garbage(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    action = p["actions"][0]
    old = action.get("value", "")
    kind = draw(st.sampled_from(["text", "json", "deep", "nested", "list", "drop", "huge"]))
    if kind == "text":
        action["value"] = draw(
            st.sampled_from(["{not-json", "", "null", "true", "1e999", "[]"]) | st.text()
        )
    elif kind == "json":
        action["value"] = json.dumps(draw(JUNK))
    elif kind == "deep":
        action["value"] = draw(DEEP.map(lambda s: s[:1999]))
    elif kind == "nested":
        action["value"] = json.dumps({"v": json.loads(old), "i": json.loads(old).get("i")})
    elif kind == "list":
        action["value"] = json.dumps([json.loads(old)])
    elif kind == "drop":
        del action["value"]
    else:  # still the same JSON, but longer than a button's value may be: a 400
        action["value"] = old + " " * draw(st.integers(2001 - len(old), 3000))
    if canonical(action.get("value")) == canonical(old):
        action["value"] = old + "x"
    return f"value garbage ({kind})"


def _on(p: dict[str, Any], card: Card) -> None:
    p["channel"] = {"id": card.channel, "name": "incidents"}
    p["container"] = {"type": "message", "message_ts": card.ts, "channel_id": card.channel}
    p["message"] = {"ts": card.ts, "thread_ts": card.thread_ts, "type": "message"}


def _tamper_rebind(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    """The click, as made on another incident's card (all of channel, container, message)."""
    other = draw(st.sampled_from([i for i in world.incident_ids if i != b.incident_id]))
    _on(p, world.cards[other])
    return f"clicked on INC-{other}'s card"


def _tamper_partial(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    """Only the container's message (or channel) changed to another incident's card."""
    other = world.cards[
        draw(st.sampled_from([i for i in world.incident_ids if i != b.incident_id]))
    ]
    p["container"]["message_ts"] = other.ts
    if draw(st.booleans()):
        p["message"]["ts"] = other.ts
    return f"container.message_ts of INC-{other.incident_id}'s card"


def _tamper_nowhere(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    """The click on no incident's message: another ts, another channel, or none at all."""
    kind = draw(
        st.sampled_from(["ts", "channel", "no channel", "no container", "no message at all"])
    )
    cards = {c.ts for c in world.cards.values()} | {c.thread_ts for c in world.cards.values()}
    if kind == "ts":
        ts = draw(TS.filter(lambda t: t not in cards))
        p["container"]["message_ts"] = p["message"]["ts"] = ts
        p["message"]["thread_ts"] = draw(st.none() | TS.filter(lambda t: t not in cards))
    elif kind == "channel":
        channel = draw(st.sampled_from(["C0DEVOPS", "C0ELSEWHERE", "D0DIRECT"]) | SLACK_ID)
        p["channel"]["id"] = p["container"]["channel_id"] = channel
    elif kind == "no channel":
        del p["channel"]
    elif kind == "no container":
        del p["container"]
        p.pop("message", None)
    else:
        for k in ("channel", "container", "message"):
            p.pop(k, None)
    return f"nowhere ({kind})"


def _tamper_ephemeral(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    p["container"]["is_ephemeral"] = True
    return "claims to be an ephemeral button"


def _tamper_reseal_other(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    """A value sealed with rollbot's own key but naming another incident (binding must catch it)."""
    action = p["actions"][0]
    data = _value_data(action)
    other = draw(
        st.sampled_from([i for i in world.incident_ids if i != b.incident_id])
        | st.integers(1, 2**31 - 1).filter(lambda i: i not in world.cards)
    )
    data["i"] = other
    if draw(st.booleans()):
        data["n"] = draw(st.from_regex(r"\A[0-9a-f]{12}\Z"))
    action["value"] = world.seal(data, action["action_id"])
    return f"resealed for INC-{other}"


def _tamper_actions(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    kind = draw(st.sampled_from(["empty", "six", "junk first", "not a list", "no actions"]))
    real = p["actions"][0]
    if kind == "empty":
        p["actions"] = []
    elif kind == "six":
        p["actions"] = [real] * 6
    elif kind == "junk first":
        junk = {"type": "button", "action_id": draw(st.sampled_from(SYNTHETIC_ACTION_IDS))}
        if draw(st.booleans()):
            junk["value"] = draw(st.text(max_size=50))
        p["actions"] = [junk, real]
    elif kind == "not a list":
        p["actions"] = draw(st.just(real) | JUNK.filter(lambda v: not isinstance(v, list)))
    else:
        del p["actions"]
    return f"actions {kind}"


def _tamper_user_struct(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    """Not a user Slack would send (so not a person rollbot may act for)."""
    p["user"] = draw(
        st.sampled_from([5, None, "U0REQ", [], {}, {"id": 5}, {"id": None}, {"name": "U0REQ"}])
        | st.fixed_dictionaries({"id": ODD_IDS})
        | JUNK
    )
    try:
        Identified.model_validate(p["user"])
        p["user"] = 5
    except ValidationError:
        pass
    return f"user={p['user']!r}"[:80]


def _tamper_tick(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    """A checklist's sealed block id changed, or taken from another incident's card."""
    action = p["actions"][0]
    prefix, which, incident, mac = action["block_id"].split(":")
    other = draw(st.sampled_from([i for i in world.incident_ids if i != b.incident_id]))
    kind = draw(st.sampled_from(["id", "mac", "which", "parts", "resealed", "from another card"]))
    if kind == "id":
        new = draw(st.sampled_from([str(other), "0", "-1", "1e3", " 1", "99999999999"]))
        action["block_id"] = f"{prefix}:{which}:{new}:{mac}"
    elif kind == "mac":
        new = draw(st.sampled_from(["", "unsealed", mac.upper(), mac[:-1]]) | HEADER_TEXT)
        action["block_id"] = f"{prefix}:{which}:{incident}:{new if new != mac else mac + '0'}"
    elif kind == "which":
        new = draw(st.sampled_from(["after" if which == "before" else "before", "", "both"]))
        action["block_id"] = f"{prefix}:{new}:{incident}:{mac}"
    elif kind == "parts":
        action["block_id"] = draw(
            st.sampled_from(
                [
                    f"{prefix}:{which}:{incident}",
                    f"{action['block_id']}:x",
                    f"{which}:{incident}:{mac}",
                    "",
                    f"rb_checklist:{which}:{incident}:{mac}:{mac}",
                ]
            )
        )
    elif kind == "resealed":
        seal = world.signer.seal(f"rb_tick:{which}", str(other))
        action["block_id"] = f"{prefix}:{which}:{other}:{seal}"
    else:
        same = [
            o.action["block_id"]
            for o in world.buttons
            if o.incident_id == other and o.action["action_id"] == action["action_id"]
        ]
        seal = world.signer.seal(f"rb_tick:{which}", str(other))
        action["block_id"] = same[0] if same else f"{prefix}:{which}:{other}:{seal}"
    return f"checklist block id {kind}: {action['block_id']}"


def _tamper_owner(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    """An ephemeral button clicked by someone it was not given to."""
    p["user"] = {"id": draw(PERSON.filter(lambda u: u != b.owner)), "team_id": "T0TEST"}
    return f"clicked by {p['user']['id']} (given to {b.owner})"


def _not_ephemeral(draw: st.DrawFn, world: World, b: Button, p: dict[str, Any]) -> str:
    p["container"]["is_ephemeral"] = False
    if draw(st.booleans()):
        del p["container"]["is_ephemeral"]
    return "the confirmation, not as an ephemeral"


Tamper = Callable[[st.DrawFn, World, Button, dict[str, Any]], str]
VALUE_TAMPERS: list[Tamper] = [_tamper_field, _tamper_seal, _tamper_garbage, _tamper_reseal_other]
STRUCTURE_TAMPERS: list[Tamper] = [_tamper_move, _tamper_actions, _tamper_user_struct]
BINDING_TAMPERS: list[Tamper] = [
    _tamper_rebind,
    _tamper_partial,
    _tamper_nowhere,
    _tamper_ephemeral,
]


def _tampers(b: Button) -> list[Tamper]:
    """Every change that must make rollbot refuse a click on ``b`` (whoever clicks it)."""
    if b.owner is not None:  # bound by its token, not by the message it is on
        return [*VALUE_TAMPERS, *STRUCTURE_TAMPERS, _tamper_owner, _not_ephemeral]
    if b.is_tick:
        return [_tamper_tick, _tamper_tick, *STRUCTURE_TAMPERS, *BINDING_TAMPERS]
    return [*VALUE_TAMPERS, *STRUCTURE_TAMPERS, *BINDING_TAMPERS]


TOP_LEVEL_EXTRAS = [
    "team",
    "enterprise",
    "authorizations",
    "response_urls",
    "is_enterprise_install",
    "enterprise_id",
    "team_id",
    "view",
    "state",
    "is_ext_shared_channel",
    "api_app_id",
    "x",
]


def _noise(draw: st.DrawFn, p: dict[str, Any]) -> list[str]:
    """Changes that decide nothing (or make the payload ill-formed: a 400)."""
    applied = []
    for kind in draw(
        st.lists(
            st.sampled_from(
                [
                    "trigger",
                    "action_ts",
                    "extra",
                    "container type",
                    "thread",
                    "text",
                    "unicode",
                    "odd ts",
                ]
            ),
            max_size=3,
            unique=True,
        )
    ):
        action = p["actions"][0] if isinstance(p.get("actions"), list) and p["actions"] else None
        if kind == "trigger":
            p["trigger_id"] = draw(st.text(max_size=300) | JUNK)
        elif kind == "action_ts" and isinstance(action, dict):
            action["action_ts"] = draw(st.text(max_size=40) | JUNK)
        elif kind == "extra":
            p[draw(st.sampled_from(TOP_LEVEL_EXTRAS))] = draw(JUNK)
        elif kind == "container type" and isinstance(p.get("container"), dict):
            p["container"]["type"] = draw(st.sampled_from(["view", "message_attachment"]) | JUNK)
        elif kind == "thread" and isinstance(p.get("message"), dict):
            if draw(st.booleans()):
                p["message"].pop("thread_ts", None)
            else:
                p["message"]["extra"] = draw(JUNK)
        elif kind == "text" and isinstance(action, dict):
            action["text"] = draw(JUNK)
        elif kind == "odd ts" and isinstance(p.get("container"), dict):
            p["container"]["message_ts"] = draw(ODD_TS)
        elif kind == "unicode":
            p["user"] = (
                {**p["user"], "name": draw(st.text())} if isinstance(p["user"], dict) else p["user"]
            )
        else:
            continue
        applied.append(kind)
    return applied


@st.composite
def block_actions(draw: st.DrawFn, world: World) -> Request:
    """A real click on a victim's card or confirmation, with one change rollbot must refuse."""
    b = draw(st.sampled_from(world.buttons))
    p = b.payload(b.owner or draw(PERSON))
    fresh = ""
    # A new nonce, sealed: not a duplicate of an earlier click (the inbox would drop it). Not
    # for a confirmation, whose nonce is the token it was given with.
    if "value" in b.action and b.owner is None and draw(st.booleans()):
        data = _value_data(p["actions"][0])
        data["n"] = draw(st.from_regex(r"\A[0-9a-f]{12}\Z"))
        p["actions"][0]["value"] = world.seal(data, p["actions"][0]["action_id"])
        fresh = "fresh nonce, "
    tamper = draw(st.sampled_from(_tampers(b)))
    what = tamper(draw, world, b, p)
    noise = _noise(draw, p)
    request = interactive(
        f"{b.action['action_id']} on INC-{b.incident_id}: {fresh}{what}; noise {noise}",
        p,
        as_json=draw(st.integers(0, 9)) == 0,
    )
    return request


# ---------------------------------------------------------------- view submissions
def _submission(modal: Modal, user: str, root_cause: str, notes: str) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": "T0TEST", "domain": "test"},
        "user": {"id": user, "team_id": "T0TEST"},
        "api_app_id": "A0ROLLBOT",
        "token": "legacy",
        "trigger_id": f"trig.{time.monotonic_ns()}",
        "view": {
            **copy.deepcopy(modal.view),
            "id": f"V{time.monotonic_ns()}",
            "hash": f"h{time.monotonic_ns()}",
            "state": {
                "values": {
                    "root_cause": {"value": {"type": "plain_text_input", "value": root_cause}},
                    "notes": {"value": {"type": "plain_text_input", "value": notes}},
                }
            },
        },
    }


def _input_value(values: Any, block: str) -> dict[str, Any] | None:
    """The input ``block`` of a form's state, if an earlier change left it in place."""
    found = values.get(block) if isinstance(values, dict) else None
    found = found.get("value") if isinstance(found, dict) else None
    return found if isinstance(found, dict) else None


@st.composite
def view_submissions(draw: st.DrawFn, world: World) -> Request:
    """A root-cause form rollbot opened, submitted with its metadata, sender or shape changed."""
    modal = draw(st.sampled_from(world.modals))
    p = _submission(modal, modal.user, draw(st.text(min_size=1) | SECRETISH), draw(st.text()))
    view = p["view"]
    meta = json.loads(view["private_metadata"])
    kind = draw(st.sampled_from(["i", "n", "drop n", "drop i", "garbage", "user", "callback"]))
    if kind in ("i", "n"):
        meta[kind] = draw(_field_values(world, kind, meta[kind]))
        view["private_metadata"] = json.dumps(meta)
    elif kind in ("drop n", "drop i"):
        del meta[kind[-1]]
        view["private_metadata"] = json.dumps(meta)
    elif kind == "garbage":
        view["private_metadata"] = draw(
            st.sampled_from(["", "{not-json", "null", "[]", json.dumps([meta])])
            | DEEP.map(lambda s: s[:3000])
            | st.text()
            | JUNK.map(json.dumps)
        )
    elif kind == "user":
        p["user"] = {"id": draw(PERSON.filter(lambda u: u != modal.user))}
    else:
        view["callback_id"] = draw(
            st.sampled_from(["rb_other", "rb_root_cause ", "RB_ROOT_CAUSE", "other", "", "rb_"])
            | st.text(max_size=30).filter(lambda c: c != "rb_root_cause")
        )
    for extra in draw(
        st.lists(
            st.sampled_from(
                [
                    "values list",
                    "values odd",
                    "no root cause",
                    "blank root cause",
                    "huge",
                    "no type",
                    "type",
                    "id",
                    "hash",
                    "extra",
                    "view junk",
                ]
            ),
            max_size=2,
            unique=True,
        )
    ):
        values = view["state"]["values"]
        if extra == "values list" and isinstance(values, dict):
            view["state"]["values"] = list(values.values())
        elif extra == "values odd" and isinstance(values, dict):
            values[draw(st.sampled_from(["root_cause", "notes"]))] = draw(
                JUNK | st.fixed_dictionaries({"value": JUNK})
            )
        elif extra == "no root cause" and isinstance(values, dict):
            values.pop("root_cause", None)
        elif extra in ("blank root cause", "huge"):
            block = "root_cause" if extra == "blank root cause" else "notes"
            text = draw(st.sampled_from(["", " ", "\n\t"])) if block == "root_cause" else None
            field = _input_value(values, block)
            if field is not None:
                field["value"] = text if text is not None else "n" * draw(st.integers(2900, 4000))
        elif extra == "no type":
            del view["type"]
        elif extra == "type":
            view["type"] = draw(st.sampled_from(["home", "Modal", ""]) | JUNK)
        elif extra in ("id", "hash"):
            view[extra] = draw(st.text(max_size=300) | JUNK)
        elif extra == "extra":
            p[draw(st.sampled_from(TOP_LEVEL_EXTRAS))] = draw(JUNK)
        elif extra == "view junk":
            p["view"] = draw(JUNK)
            break
    return interactive(
        f"root-cause form of INC-{modal.incident_id} for {modal.user}: {kind}",
        p,
        as_json=draw(st.integers(0, 9)) == 0,
    )


# ---------------------------------------------------------------- raw bodies
PAYLOAD_TYPES = (
    st.sampled_from(
        [
            "block_actions",
            "view_submission",
            "event_callback",
            "url_verification",
            "app_mention",
            "shortcut",
        ]
    )
    | JUNK
)
CONTENT_TYPES = st.sampled_from(
    [
        FORM,
        FORM,
        JSON,
        JSON,
        "application/json; charset=utf-8",
        "text/plain",
        "application/JSON",
        "multipart/form-data; boundary=x",
        "",
        "application/x-www-form-urlencoded; charset=latin-1",
        None,
    ]
)


@st.composite
def raw_bodies(draw: st.DrawFn) -> Request:
    """Signed bodies that are not what Slack sends: unreadable, of the wrong type, or too big."""
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "not utf-8",
                "payload text",
                "payload deep",
                "json deep",
                "json type",
                "json junk",
                "form junk",
                "event",
                "empty",
                "too big",
            ]
        )
    )
    if kind == "bytes":
        raw = draw(st.binary(max_size=500))
    elif kind == "not utf-8":
        raw = b"payload=" + draw(st.binary(min_size=1, max_size=50)) + b"\xff\xfe"
    elif kind == "payload text":
        raw = b"payload=" + draw(
            st.sampled_from([b"%7Bnot-json", b"", b"%5B%5D", b"null", b"5", b"%22x%22"])
            | st.text().map(lambda s: urlencode({"p": s})[2:].encode())
        )
    elif kind == "payload deep":
        raw = b"payload=" + draw(DEEP).encode()  # '[' and '{' need no quoting for parse_qs
    elif kind == "json deep":
        raw = draw(DEEP).encode()
    elif kind == "json type":
        raw = json.dumps(
            draw(
                st.fixed_dictionaries(
                    {"type": PAYLOAD_TYPES},
                    optional={
                        "command": JUNK,
                        "event": JUNK,
                        "challenge": JUNK,
                        "event_id": JUNK,
                        "actions": JUNK,
                        "user": JUNK,
                        "view": JUNK,
                    },
                )
            )
        ).encode()
    elif kind == "json junk":
        raw = json.dumps(draw(JUNK)).encode()
    elif kind == "form junk":
        raw = draw(
            st.sampled_from(
                [
                    b"abc",
                    b"a=1&&b",
                    b"%zz=1",
                    b"=",
                    b"&",
                    b"payload",
                    b"command",
                    b"ssl_check=1&token=x",
                    b"type=block_actions",
                    b"command=/rollback",
                ]
            )
            | st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=5).map(
                lambda pairs: urlencode(pairs).encode()
            )
        )
    elif kind == "event":
        event = draw(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["app_mention", "message", "reaction_added"]) | JUNK},
                optional={
                    "user": SLACK_ID | JUNK,
                    "channel": SLACK_ID | JUNK,
                    "text": JUNK,
                    "ts": TS | JUNK,
                    "thread_ts": TS | JUNK,
                    "team": JUNK,
                    "user_team": JUNK,
                    "subtype": JUNK,
                    "bot_id": JUNK,
                },
            )
        )
        body = {
            "type": "event_callback",
            "event_id": f"Ev{draw(st.integers(0, 10**9))}",
            "event": event,
            "team_id": "T0TEST",
            "api_app_id": "A0ROLLBOT",
        }
        for k in draw(st.lists(st.sampled_from(TOP_LEVEL_EXTRAS), max_size=2, unique=True)):
            body[k] = draw(JUNK)
        if draw(st.booleans()):
            del body["team_id"]
        raw = json.dumps(body).encode()
    elif kind == "empty":
        raw = b""
    else:
        raw = b"payload=" + b"x" * (MAX_BODY + draw(st.integers(0, 4096)))
    expect = frozenset({413}) if len(raw) > MAX_BODY else frozenset({200, 400})
    return Request(f"raw {kind}", raw, draw(CONTENT_TYPES), expect=expect)


# ---------------------------------------------------------------- unsigned
BAD_TIMESTAMPS = st.sampled_from(
    [
        "not-a-number",
        "1e9",
        "",
        "-1",
        "9" * 40,
        "0x6553F100",
        "+1700000000",
        "1700000000.5",
        "0" * 13,
        " ",
        "NaN",
        "1_700_000_000",
    ]
) | HEADER_TEXT.filter(lambda s: not s.strip().isdigit())


@st.composite
def bad_auth(draw: st.DrawFn) -> Auth:
    kind = draw(
        st.sampled_from(
            [
                "none",
                "no_timestamp",
                "no_signature",
                "wrong_secret",
                "skew",
                "raw_ts",
                "bad_signature",
                "other_body",
                "ts_mismatch",
            ]
        )
    )
    if kind == "wrong_secret":
        return Auth(kind, secret=draw(st.text(max_size=40).filter(lambda s: s != SIGNING_SECRET)))
    if kind == "skew":
        seconds = st.integers(310, 10**10)
        return Auth(kind, skew=draw(seconds | seconds.map(lambda s: -s)))
    if kind == "raw_ts":
        return Auth(kind, raw_ts=draw(BAD_TIMESTAMPS))
    if kind == "bad_signature":
        sig = draw(
            st.sampled_from(
                ["", "v0=", "v1=" + "0" * 64, "v0=" + "A" * 64, "v0=" + "0" * 63, "0" * 64]
            )
            | HEADER_TEXT
        )
        return Auth(kind, signature=sig or " ")
    return Auth(kind)


@st.composite
def unsigned_requests(draw: st.DrawFn, world: World) -> Request:
    """Requests Slack did not sign (or signed for another time, body or app) that would act if
    the door let them in: commands and mentions naming fresh ids, the victims' own buttons and
    forms clicked by the people who may use them."""
    n = draw(st.integers(0, 10**9))
    user, channel = f"U{UNSIGNED}{n}", f"C{UNSIGNED}{n}"
    kind = draw(st.sampled_from(["command", "click", "click by stranger", "form", "mention"]))
    if kind == "command":
        text = draw(st.sampled_from(["production", "staging", ""])) + f" unsigned {n}"
        fields = command_body(user, text, channel)
        raw, content_type = urlencode(fields).encode(), FORM
    elif kind in ("click", "click by stranger"):
        b = draw(st.sampled_from(world.buttons))
        who = user if kind == "click by stranger" else (b.owner or draw(st.sampled_from(PEOPLE)))
        p = b.payload(who)
        if kind == "click by stranger":
            p["channel"]["id"] = channel
        raw, content_type = urlencode({"payload": json.dumps(p)}).encode(), FORM
    elif kind == "form":
        modal = draw(st.sampled_from(world.modals))
        p = _submission(modal, modal.user, f"unsigned root cause {n}", "")
        raw, content_type = urlencode({"payload": json.dumps(p)}).encode(), FORM
    else:
        event = {
            "type": "app_mention",
            "user": user,
            "channel": channel,
            "ts": f"{n}.000100",
            "text": f"<@U0ROLLBOT> {draw(st.sampled_from(['rollback production', 'status']))}",
        }
        body = {
            "type": "event_callback",
            "event_id": f"Ev{UNSIGNED}{n}",
            "event": event,
            "team_id": "T0TEST",
        }
        raw, content_type = json.dumps(body).encode(), JSON
    world.unsigned_ids.update({user, channel})
    where = draw(st.sampled_from(["door"] * 8 + ["method", "path"]))
    if where == "method":  # signed, but not a POST: nothing but a 404
        method = draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH"]))
        return Request(
            f"unsigned {kind} via {method}",
            raw,
            content_type,
            Auth(),
            method,
            expect=frozenset({404}),
        )
    if where == "path":
        path = draw(
            st.sampled_from(
                [
                    "/slack/events/",
                    "//slack/events",
                    "/slack/Events",
                    "/",
                    "/slack/events/../events",
                    "/healthz/x",
                ]
            )
        )
        return Request(
            f"unsigned {kind} to {path}",
            raw,
            content_type,
            Auth(),
            path=path,
            expect=frozenset({404}),
        )
    auth = draw(bad_auth())
    return Request(
        f"unsigned {kind} ({auth.kind})", raw, content_type, auth, expect=frozenset({401})
    )
