"""``rollbot check-config``: every problem of the configuration, one line each, in one pass.

Problems go to stderr (``rollbot: FILE: WHERE: WHAT``) and exit 2; a valid file
prints a summary, with the environments of each tier (several per tier mean
``/rollback production`` asks which one).
"""

from __future__ import annotations

import argparse

from bot.config import TIERS, Settings, unset_env_vars
from handlers.runtime import load_config


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
    settings = load_config(args.file or args.config)
    missing = unset_env_vars(settings)
    if missing and args.require_env:
        for name in missing:
            print(f"rollbot: {settings.source}: {name} is not set")
        return 2
    print(f"{settings.source}: OK")
    for line in tier_lines(settings):
        print(line)
    print(
        f"  incidents: {settings.slack.incidents_channel}, devops: {settings.slack.devops_channel}"
    )
    print(
        f"  business hours: {','.join(settings.business_hours.days)} "
        f"{settings.business_hours.start:%H:%M}-{settings.business_hours.end:%H:%M} "
        f"{settings.business_hours.timezone}"
    )
    print(f"  after hours: {paging_line(settings)}")
    for line in pitr_lines(settings):
        print(line)
    for name in missing:
        print(f"  note: {name} is not set in this shell")
    return 0


def paging_line(settings: Settings) -> str:
    """Who is paged after hours, said plainly: a missing routing key means nobody is."""
    from bot.outbox import paging_audiences

    pd = settings.pagerduty
    can = paging_audiences(settings)
    parts = [
        f"on-call via ${pd.routing_key_env}"
        if "oncall" in can
        else f"NOBODY is paged (${pd.routing_key_env or 'routing_key_env'} is not set)",
    ]
    if "cto" in can:
        parts.append(f"CTO for production via ${pd.cto_routing_key_env}")
    else:
        parts.append(
            f"no CTO escalation (${pd.cto_routing_key_env or 'cto_routing_key_env'} is not set)"
        )
    return "; ".join(parts)


def pitr_lines(settings: Settings) -> list[str]:
    """For each environment with a PITR tool: what it can restore, by asking the tool
    (``pgbackrest check`` and ``info``); a failing or lagging archive is a WARNING line."""
    from providers.pgbackrest.status import status

    lines = []
    for env in settings.environments.values():
        if env.pitr is None:
            continue
        found = status(env)
        lines += [f"  pitr {line}" for line in found.lines()[:1]]
        lines += [f"    {line}" for line in found.lines()[1:] if not line.startswith("PROBLEM")]
        lines += [f"  WARNING: {env.name}: {w}" for w in found.warnings]
    return lines


def tier_lines(settings: Settings) -> list[str]:
    """One line per tier: its environments with their providers, or none."""
    lines = ["  environments by tier:"]
    for tier in TIERS:
        envs = settings.environments_in_tier(tier)
        names = ", ".join(f"{e.name} ({e.provider})" for e in envs) or "none"
        lines.append(f"    {tier + ':':<12} {names}")
    return lines
