"""``rollbot serve``: run the Slack app (Socket Mode or HTTP under gunicorn)."""

from __future__ import annotations

import argparse
import logging


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the Slack app",
        description=(
            "Serve the Slack app. Tokens come from SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET "
            "(HTTP) and SLACK_APP_TOKEN (Socket Mode); ROLLBOT_SLACK_API_URL points the "
            "Web API client elsewhere."
        ),
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--socket", action="store_true", help="Socket Mode (no public URL needed)")
    mode.add_argument("--http", action="store_true", help="HTTP at /slack/events and /healthz")
    p.add_argument("--host", default="0.0.0.0", help="HTTP bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=3000, help="HTTP port (default 3000)")
    p.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=16, help="threads per gunicorn worker")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from handlers.slack.server import SlackTokens, serve_http, serve_socket

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.socket:
        serve_socket(args.config)
    else:
        SlackTokens.from_env(socket_mode=False)  # fail with one line before gunicorn starts
        serve_http(
            args.config,
            host=args.host,
            port=args.port,
            workers=args.workers,
            threads=args.threads,
        )
    return 0
