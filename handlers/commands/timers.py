"""``rollbot timers run`` / ``rollbot timers list``: the durable timers (approval reminders
and pages, post-mortem and cron reminders) outside the Slack processes.

``run`` sweeps until SIGTERM or SIGINT; run it on as many hosts as you like (each due timer
fires once, whoever finds it first). ``list`` shows what is pending.
"""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import datetime
from types import FrameType

from bot.models import Timer
from bot.notify import Notifier
from bot.outbox import Deliverer
from bot.timers import describe, pending, worker_id
from handlers.jsonout import add_json_flag, emit, iso
from handlers.logs import add_logging_options
from handlers.runtime import Runtime, paging_notifiers, start_runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("timers", help="run or list the durable timers (reminders, pages)")
    inner = p.add_subparsers(dest="timers_command", metavar="ACTION", required=True)
    run = inner.add_parser(
        "run",
        help="fire due timers until SIGTERM/SIGINT",
        description=(
            "Sweeps the state database for due timers every [reminders] timer_sweep_seconds "
            "and fires each exactly once, however many processes sweep; delivers the notices "
            "they queue when PagerDuty's routing key or SLACK_BOT_TOKEN is set."
        ),
    )
    run.add_argument(
        "--no-deliver",
        action="store_true",
        help="only fire timers; leave their notices to the Slack worker",
    )
    add_logging_options(run)
    run.set_defaults(func=cmd_run)
    ls = inner.add_parser("list", help="pending timers: kind, incident, when due")
    add_json_flag(ls)
    ls.set_defaults(func=cmd_list)


def cmd_run(args: argparse.Namespace) -> int:
    from handlers.logs import LogSettings, configure_logging
    from handlers.timers import start_timer_sweep

    configure_logging(LogSettings.resolve(args.log_format, args.log_level))
    runtime = start_runtime(args.config)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    deliverer = None if args.no_deliver else _deliverer(runtime)
    scheduler = start_timer_sweep(runtime, deliverer)
    seconds = runtime.settings.reminders.timer_sweep_seconds
    print(f"rollbot timers: sweeping every {seconds:g} s as {worker_id()}", flush=True)
    while not stop.wait(1.0):
        pass
    scheduler.shutdown(wait=True)
    return 0


def _deliverer(runtime: Runtime) -> Deliverer | None:
    """PagerDuty and the devops channel, those configured here; None without either."""
    from providers.slack_notify import DevopsNotifier

    notifiers: list[Notifier] = [*paging_notifiers(runtime.settings)]
    devops = DevopsNotifier.from_settings(runtime.settings)
    if devops is not None:
        notifiers.append(devops)
    return Deliverer(runtime.bot.store, notifiers, runtime.bot.clock) if notifiers else None


def cmd_list(args: argparse.Namespace) -> int:
    runtime = start_runtime(args.config)
    with runtime.bot.store.read() as session:
        timers = pending(session)
    now = runtime.bot.clock()
    if args.json:
        emit({"timers": [_timer_json(t) for t in timers]})
        return 0
    if not timers:
        print("no pending timers")
    for t in timers:
        print(f"{_ref(t):<8} {t.kind:<24} due {iso(t.due_at)} ({_when(t, now)})")
    return 0


def _ref(timer: Timer) -> str:
    return f"INC-{timer.incident_id}" if timer.incident_id is not None else "-"


def _when(timer: Timer, now: datetime) -> str:
    delta = timer.due_at - now
    return f"in {describe(delta)}" if delta.total_seconds() >= 0 else f"{describe(-delta)} overdue"


def _timer_json(timer: Timer) -> dict[str, object]:
    return {
        "id": timer.id,
        "kind": timer.kind,
        "incident": _ref(timer) if timer.incident_id is not None else None,
        "due_at": iso(timer.due_at),
        "created_at": iso(timer.created_at),
        "payload": timer.payload,
    }
