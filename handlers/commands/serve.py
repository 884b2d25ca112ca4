"""``rollbot serve``: the Slack app (Socket Mode or HTTP under gunicorn) and its worker."""

from __future__ import annotations

import argparse

from handlers.logs import add_logging_options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the Slack app",
        description=(
            "Serve the Slack app: acknowledge requests here (after recording them) and do the "
            "work in a `rollbot worker` process started beside it. Tokens come from "
            "SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET (HTTP) and SLACK_APP_TOKEN (Socket Mode); "
            "ROLLBOT_SLACK_API_URL points the Web API client elsewhere."
        ),
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--socket", action="store_true", help="Socket Mode (no public URL needed)")
    mode.add_argument(
        "--http",
        action="store_true",
        help="HTTP at /slack/events; probes /healthz, /readyz; /metrics",
    )
    p.add_argument("--host", default="0.0.0.0", help="HTTP bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=3000, help="HTTP port (default 3000)")
    p.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=16, help="threads per gunicorn worker")
    p.add_argument(
        "--no-worker",
        action="store_true",
        help="only acknowledge; run `rollbot worker` elsewhere (e.g. more ack replicas)",
    )
    add_logging_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import sys

    from handlers.logs import LogSettings, configure_logging
    from handlers.rundir import RunDir

    settings = LogSettings.resolve(args.log_format, args.log_level)
    settings.export()  # the worker started below logs the same way
    configure_logging(settings)
    log = logging.getLogger("handlers.commands.serve")
    if "prometheus_client" in sys.modules:  # its multiprocess mode is chosen at import
        log.warning("metrics are per process: prometheus_client was imported too early")
    # Before handlers.slack.server is imported: it sets $PROMETHEUS_MULTIPROC_DIR.
    run_dir = RunDir.create()
    log.info("runtime files (control socket, metrics, worker heartbeat) in %s", run_dir.path)
    try:
        from handlers.slack.server import SlackTokens, serve_http, serve_socket

        if args.socket:
            SlackTokens.from_env(socket_mode=True)  # fail with one line before anything starts
            serve_socket(args.config, with_worker=not args.no_worker)
        else:
            SlackTokens.from_env(socket_mode=False)
            serve_http(
                args.config,
                host=args.host,
                port=args.port,
                workers=args.workers,
                threads=args.threads,
                with_worker=not args.no_worker,
                log_settings=settings,
                run_dir=run_dir,
            )
    finally:
        run_dir.remove()
    return 0
