"""A bare Bolt app (ack only) served exactly like rollbot: the benchmark's baseline.

gunicorn -k gthread --threads 16 -b 127.0.0.1:PORT benchmarks.bare_bolt:application
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

from handlers.scheduling import ask_for_short_slices


def _authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
    return AuthorizeResult(
        enterprise_id=enterprise_id, team_id=team_id, bot_token=os.environ["SLACK_BOT_TOKEN"]
    )


app = App(
    client=WebClient(
        os.environ["SLACK_BOT_TOKEN"], base_url=os.environ.get("ROLLBOT_SLACK_API_URL")
    ),
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    authorize=_authorize,
    process_before_response=True,
    token_verification_enabled=False,
)


@app.command("/rollback")
def _command(ack: Any) -> None:
    ack()


@app.action(re.compile(r"^rb_"))
def _action(ack: Any) -> None:
    ack()


application = SlackRequestHandler(app)
# Scheduled as rollbot's ack side is (gunicorn loads this before it starts its threads):
# the baseline differs from rollbot by the app's work only.
sys.setswitchinterval(0.001)
ask_for_short_slices()
