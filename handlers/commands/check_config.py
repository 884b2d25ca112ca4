"""``rollbot check-config``: every problem of the configuration, one line each."""

from __future__ import annotations

import argparse

from bot.config import load_settings, unset_env_vars


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate the configuration file")
    p.add_argument("file", nargs="?", help="file to check (default: the --config file)")
    p.add_argument(
        "--require-env",
        action="store_true",
        help="also fail when a referenced secret environment variable is not set",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.file or args.config)
    missing = unset_env_vars(settings)
    if missing and args.require_env:
        for name in missing:
            print(f"rollbot: {settings.source}: {name} is not set")
        return 2
    envs = ", ".join(f"{e.name} ({e.tier}, {e.provider})" for e in settings.environments.values())
    print(f"{settings.source}: OK")
    print(f"  environments: {envs or 'none'}")
    print(
        f"  incidents: {settings.slack.incidents_channel}, devops: {settings.slack.devops_channel}"
    )
    print(
        f"  business hours: {','.join(settings.business_hours.days)} "
        f"{settings.business_hours.start:%H:%M}-{settings.business_hours.end:%H:%M} "
        f"{settings.business_hours.timezone}"
    )
    for name in missing:
        print(f"  note: {name} is not set in this shell")
    return 0
