"""The Bolt app for Socket Mode: Bolt keeps the connection, rollbot's router answers.

Every envelope has been shape-checked before Bolt sees it
(``handlers.slack.server.ValidatingSocketModeHandler``); one middleware then
hands the validated payload to :meth:`handlers.slack.acks.Acknowledger.dispatch`,
the same router the HTTP front door calls, and returns its answer without
going further down Bolt's chain. So both transports route, record and answer
alike, and nothing reaches a listener of Bolt's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

from bot.redact import redact
from handlers.slack.acks import Acknowledger
from handlers.slack.payloads import BadPayload, classify

log = logging.getLogger(__name__)


def build_app(acks: Acknowledger, *, client: WebClient) -> App:
    """The Socket Mode app for one acknowledging process. ``client``: ``make_web_client``."""
    token = client.token

    def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    app = App(
        client=client,
        signing_secret="unused-in-socket-mode",
        authorize=authorize,
        process_before_response=True,
        request_verification_enabled=False,  # Socket Mode is authenticated by its app token
        token_verification_enabled=False,
        name="rollbot",
    )

    @app.middleware
    def answer(body: dict[str, Any], next: Callable[[], None]) -> BoltResponse:
        try:
            payload = classify(body)
        except BadPayload as exc:
            log.info("dropped a Socket Mode payload of the wrong shape: %s", exc)
            return BoltResponse(status=200, body="")
        reply = acks.dispatch(payload)
        return BoltResponse(status=200, body=reply if reply is not None else "")

    @app.error
    def on_error(error: Exception) -> BoltResponse:
        # Never post anything from here: the body may be anything at all.
        log.error("Slack app error: %s", redact(f"{type(error).__name__}: {error}")[:300])
        return BoltResponse(status=200, body="")

    return app
