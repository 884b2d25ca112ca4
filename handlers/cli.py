"""``rollbot`` command line: one entry point, subcommands discovered from ``handlers.commands``.

Each module in ``handlers/commands/`` exposes ``register(subparsers)`` and sets
``func`` on its parser; ``func(args)`` returns the exit code. Any
:class:`~bot.errors.RollbotError` becomes one line on stderr and exit code 2,
never a stack trace. A reader that stops early (``rollbot show INC | head -1``)
ends the command quietly with exit 0, as other Unix tools do.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import pkgutil
import sys
import tomllib
import traceback
from collections.abc import Sequence
from pathlib import Path

import handlers.commands
from bot.errors import ConfigError, RollbotError
from bot.redact import redact
from bot.request_context import RequestContext, handling
from handlers.runtime import deliver_pending_notices, os_user


def version() -> str:
    """The installed package's version; from pyproject.toml when run from a bare checkout."""
    try:
        return importlib.metadata.version("rollbot")
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollbot",
        description="Run the database rollback runbook from a terminal or Slack.",
    )
    parser.add_argument("--version", action="version", version=f"rollbot {version()}")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="configuration file (default: $ROLLBOT_CONFIG, ./rollbot.toml, or the embedded default)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(handlers.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"handlers.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with handling(RequestContext(via=f"cli (os user {os_user()})")):
            try:
                code = int(args.func(args) or 0)
            finally:
                deliver_pending_notices()
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except BrokenPipeError:
        return _reader_went_away()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"rollbot: {redact(problem)}", file=sys.stderr)
        return exc.exit_code
    except RollbotError as exc:
        print(f"rollbot: {redact(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rollbot: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unforeseen failure: still one line, no secrets
        if os.environ.get("ROLLBOT_DEBUG"):
            print(redact(traceback.format_exc()), file=sys.stderr)
        print(
            f"rollbot: unexpected error: {type(exc).__name__}: {redact(exc)} "
            "(set ROLLBOT_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def _reader_went_away() -> int:
    """The reader closed the pipe: stop quietly (Python's documented recipe).

    stdout is pointed at /dev/null so the interpreter's final flush of what is still
    buffered does not raise again; 0 because the reader got all it asked for.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (captured in tests)
        pass
    finally:
        os.close(devnull)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
