"""``rollbot worker``: do the Slack work the acknowledging side recorded (``rollbot serve``
starts one; run more, or run it alone beside ``rollbot serve --no-worker`` replicas)."""

from __future__ import annotations

import argparse

from handlers.logs import add_logging_options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "worker",
        help="process recorded Slack requests and run incident steps",
        description=(
            "Claims the requests `rollbot serve` recorded, exactly once each, and runs incident "
            "steps. Needs SLACK_BOT_TOKEN; shares ROLLBOT_DATABASE_URL with the servers."
        ),
    )
    p.add_argument("--threads", type=int, default=4, help="requests handled at once (default 4)")
    p.add_argument(
        "--grace",
        type=float,
        default=25.0,
        metavar="SECONDS",
        help="on SIGTERM, how long running steps may take to finish (default 25)",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=10,
        help="lower the worker's CPU priority by this much (default 10), so acks come first; "
        'with [slack] worker_cpu = "idle" it also runs SCHED_IDLE; 0: neither',
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics on this port (for a worker run on its own; under `rollbot "
        "serve` the worker's metrics are in the server's /metrics)",
    )
    add_logging_options(p)
    p.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from handlers.logs import LogSettings, configure_logging
    from handlers.slack.worker import run_worker

    configure_logging(LogSettings.resolve(args.log_format, args.log_level))
    return run_worker(
        args.config,
        parent_pid=args.parent_pid,
        threads=args.threads,
        grace_seconds=args.grace,
        niceness=args.nice,
        metrics_port=args.metrics_port,
    )
