"""The shape of every Slack payload rollbot reads, checked before any listener runs.

Only the fields rollbot uses are modelled (extra fields are ignored, as Slack
adds them freely); each has a type and a bound, so a payload of the wrong
shape is refused at the door with a 400 instead of crashing a listener.
:func:`classify` turns a parsed body into one of these models, or says why not.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

MAX_TEXT = 4000  # slash command and mention text rollbot acts on

SlackId = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9_]{1,31}$")]
Ts = Annotated[str, StringConstraints(pattern=r"^\d{1,12}\.\d{1,8}$")]
Short = Annotated[str, StringConstraints(max_length=255)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class SlashCommand(_Payload):
    command: Short
    text: Annotated[str, StringConstraints(max_length=200_000)] = ""
    user_id: SlackId
    channel_id: SlackId
    trigger_id: Short = ""
    team_id: SlackId | None = None


class Identified(_Payload):
    id: SlackId


class Container(_Payload):
    type: Short
    message_ts: Ts | None = None
    channel_id: SlackId | None = None
    is_ephemeral: bool = False


class Message(_Payload):
    ts: Ts
    thread_ts: Ts | None = None


class Option(_Payload):
    value: Short


class BlockAction(_Payload):
    type: Short
    action_id: Short
    block_id: Short = ""
    value: Annotated[str, StringConstraints(max_length=2000)] | None = None
    selected_options: Annotated[list[Option], Field(max_length=10)] | None = None
    selected_option: Option | None = None  # static_select
    selected_date_time: Annotated[int, Field(ge=0, lt=2**40)] | None = None  # datetimepicker
    action_ts: Short = ""


class BlockActions(_Payload):
    type: Literal["block_actions"]
    user: Identified
    channel: Identified | None = None
    container: Container | None = None
    message: Message | None = None
    trigger_id: Short = ""
    actions: Annotated[list[BlockAction], Field(min_length=1, max_length=5)]

    @property
    def action(self) -> BlockAction:
        return self.actions[0]


class InputValue(_Payload):
    type: Short | None = None
    value: Annotated[str, StringConstraints(max_length=3000)] | None = None


class ViewState(_Payload):
    values: dict[Short, dict[Short, InputValue]] = Field(default_factory=dict)


class View(_Payload):
    id: Short
    hash: Short = ""
    type: Literal["modal"]
    callback_id: Short
    private_metadata: Annotated[str, StringConstraints(max_length=3000)] = ""
    state: ViewState = ViewState()

    def text(self, block_id: str) -> str:
        value = self.state.values.get(block_id, {}).get("value")
        return (value.value or "") if value else ""


class ViewSubmission(_Payload):
    type: Literal["view_submission"]
    user: Identified
    view: View


class Mention(_Payload):
    type: Literal["app_mention"]
    user: SlackId
    channel: SlackId
    text: Annotated[str, StringConstraints(max_length=40_000)] = ""
    ts: Ts
    thread_ts: Ts | None = None


class EventCallback(_Payload):
    type: Literal["event_callback"]
    event_id: Short
    event: dict[str, Any]


class MentionCallback(_Payload):
    """The one event rollbot acts on: someone mentioned it."""

    type: Literal["event_callback"]
    event_id: Short
    event: Mention


class AppHomeOpened(_Payload):
    type: Literal["app_home_opened"]
    user: SlackId
    tab: Short = "home"


class HomeCallback(_Payload):
    """Someone opened rollbot's Home tab: it is drawn for them."""

    type: Literal["event_callback"]
    event_id: Short
    event: AppHomeOpened


class UrlVerification(_Payload):
    type: Literal["url_verification"]
    challenge: Short


class Ignored(_Payload):
    """A well-formed payload rollbot does not act on (another event type, a closed view)."""

    type: Short


Handled = (
    SlashCommand | BlockActions | ViewSubmission | MentionCallback | HomeCallback | UrlVerification
)
EVENTS: dict[str, type[_Payload]] = {
    "app_mention": MentionCallback,
    "app_home_opened": HomeCallback,
}
INTERACTIVE: dict[str, type[_Payload]] = {
    "block_actions": BlockActions,
    "view_submission": ViewSubmission,
}


class BadPayload(ValueError):
    """Why a body is refused (a short, secret-free phrase for the 400 and the log)."""


def parse_body(content_type: str, raw: bytes) -> dict[str, Any]:
    """The body as Slack sends it: a form (slash commands, ``payload=`` JSON) or JSON."""
    try:
        text = raw.decode("utf-8")
        if content_type.startswith("application/json"):
            data = json.loads(text)
        else:
            form = {k: v[0] for k, v in parse_qs(text, strict_parsing=bool(text)).items()}
            data = json.loads(form["payload"]) if "payload" in form else form
    except (UnicodeDecodeError, ValueError, KeyError, RecursionError) as exc:
        raise BadPayload(f"unreadable body ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise BadPayload("the body is not an object")
    return data


def classify(body: dict[str, Any]) -> _Payload:
    """The validated model of ``body``; :class:`BadPayload` when its shape is wrong."""
    try:
        if "command" in body:
            return SlashCommand.model_validate(body)
        kind = body.get("type")
        if not isinstance(kind, str):
            raise BadPayload("type: not a string")
        if kind in INTERACTIVE:
            return INTERACTIVE[kind].model_validate(body)
        if kind == "event_callback":
            callback = EventCallback.model_validate(body)
            model = EVENTS.get(str(callback.event.get("type")))
            return Ignored(type=kind) if model is None else model.model_validate(body)
        if kind == "url_verification":
            return UrlVerification.model_validate(body)
        return Ignored.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise BadPayload(f"{where}: {first['type']}") from None


def for_bolt(payload: _Payload) -> dict[str, Any]:
    """What Bolt gets to see: only the validated fields, rebuilt from the model.

    Bolt reads fields of its own from every body (``team``, ``enterprise``,
    ``authorizations``, ...) without checking their types; it never sees them.
    """
    return payload.model_dump(mode="json", exclude_none=True)
