"""From an environment's ``[rds]`` section to its config, rollbot's names for restored copies,
and the connection strings of a restored instance (the app's, and rollbot's own)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from bot.config import EnvironmentConfig
from bot.errors import ConfigError, RollbotError
from bot.steps import DatabaseTarget
from providers.rds.config import RdsConfig

MAX_IDENTIFIER = 63  # RDS instance and cluster identifiers
RESTORED = "-restored-"
TAG_INCIDENT = "rollbot:incident"  # on every copy rollbot made: whose it is to delete
TAG_SOURCE = "rollbot:restored-from"


def rds_config(env: EnvironmentConfig) -> RdsConfig:
    if not isinstance(env.section, RdsConfig):
        raise ConfigError(f"environment {env.name!r} is not an RDS environment")
    return env.section


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d-%H%M%S")


def restored_name(source_id: str, now: datetime, extra: str = "") -> str:
    """``<source-id>-restored-<YYYYMMDD-HHMMSS>[extra]``, the source part cut to fit the 63
    characters RDS allows."""
    suffix = f"{RESTORED}{stamp(now)}{extra}"
    head = source_id[: MAX_IDENTIFIER - len(suffix)].rstrip("-")
    return f"{head}{suffix}"


def endpoint_of(described: dict) -> tuple[str, int] | None:
    """Host and port of a described instance (``Endpoint``) or cluster (``Endpoint``/``Port``)."""
    endpoint = described.get("Endpoint")
    if isinstance(endpoint, dict) and endpoint.get("Address"):
        return str(endpoint["Address"]), int(endpoint.get("Port") or 5432)
    if isinstance(endpoint, str) and endpoint:
        return endpoint, int(described.get("Port") or 5432)
    return None


def _with_host(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    user = ""
    if parts.username is not None:
        user = parts.username + (f":{parts.password}" if parts.password is not None else "") + "@"
    return urlunsplit(parts._replace(netloc=f"{user}{host}:{port}"))


def connection_url(env: EnvironmentConfig, target: DatabaseTarget) -> str:
    """The restored instance's connection string for the app: the environment's own URL
    (its credentials, by env-var reference; the same database name) at the new endpoint."""
    host, port = target.ref.get("host"), target.ref.get("port")
    if not host or not port:
        raise RollbotError(
            f"{target.label} has no recorded endpoint; rollbot cannot build its connection string"
        )
    return _with_host(env.database_url(), host, int(port))


def reachable_url(env: EnvironmentConfig, url: str) -> str:
    """Where rollbot itself connects: ``connect_host``/``connect_port`` (a bastion or a port
    forward) in place of the endpoint when configured, else the URL as it is."""
    cfg = rds_config(env)
    if not cfg.connect_host and not cfg.connect_port:
        return url
    parts = urlsplit(url)
    return _with_host(
        url, cfg.connect_host or parts.hostname or "", cfg.connect_port or parts.port or 5432
    )
