"""From an environment's ``[cloudsql]`` section to a client, its instance, rollbot's names,
and the connection string of an instance (the source's credentials, the instance's host)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from bot.config import EnvironmentConfig
from bot.errors import ConfigError, RollbotError
from bot.steps import Reporter
from providers.cloudsql.client import CloudSqlClient
from providers.cloudsql.config import CloudSqlConfig
from providers.cloudsql.models import Instance

RESTORED_INFIX = "-restored-"
POSTGRES_PORT = 5432
MAX_INSTANCE_NAME = 98


def cloudsql_config(env: EnvironmentConfig) -> CloudSqlConfig:
    if not isinstance(env.section, CloudSqlConfig):
        raise ConfigError(f"environment {env.name!r} is not a Cloud SQL environment")
    return env.section


def client_for(env: EnvironmentConfig) -> CloudSqlClient:
    return CloudSqlClient(cloudsql_config(env))


def stamp(moment: datetime) -> str:
    """``YYYYMMDD-HHMMSS`` in UTC, as the runbook names restored copies."""
    return moment.astimezone(UTC).strftime("%Y%m%d-%H%M%S")


def label(cfg: CloudSqlConfig, name: str) -> str:
    return f"Cloud SQL instance {name} (project {cfg.project})"


def source_instance(client: CloudSqlClient, env: EnvironmentConfig) -> Instance:
    """The environment's instance; a 404 says which instance and project were asked for."""
    cfg = cloudsql_config(env)
    found = client.find_instance(cfg.instance)
    if found is None:
        raise RollbotError(
            f"no Cloud SQL instance {cfg.instance!r} in project {cfg.project!r} (HTTP 404); "
            f"check [environments.{env.name}.cloudsql] instance and project"
        )
    return found


def wait_for(client: CloudSqlClient, name: str, env: EnvironmentConfig, report: Reporter) -> None:
    """Poll a recorded operation (by name: after a restart only the name is known)."""
    cfg = cloudsql_config(env)
    client.wait(
        name,
        on_progress=report,
        poll_seconds=cfg.poll_seconds,
        timeout_seconds=cfg.operation_timeout_seconds,
    )


def endpoint(cfg: CloudSqlConfig, instance: Instance) -> tuple[str, int]:
    """Where rollbot connects to ``instance``: the configured proxy, or its IP of ``ip_type``."""
    port = cfg.connect_port or POSTGRES_PORT
    if cfg.connect_host:
        return cfg.connect_host, port
    address = instance.ip(cfg.ip_type)
    if address is None:
        kinds = ", ".join(t for t, _ in instance.ip_addresses) or "none"
        raise RollbotError(
            f"Cloud SQL instance {instance.name} has no {cfg.ip_type} IP address (it has: "
            f"{kinds}); set ip_type, or connect_host/connect_port for the Cloud SQL Auth Proxy"
        )
    return address, port


def url_with_endpoint(database_url: str, host: str, port: int) -> str:
    """``database_url`` (the source's user, password and database) with another host:port."""
    parts = urlsplit(database_url)
    userinfo = parts.netloc.rpartition("@")[0]
    shown = f"[{host}]" if ":" in host else host
    netloc = f"{userinfo}@{shown}:{port}" if userinfo else f"{shown}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def instance_url(env: EnvironmentConfig, client: CloudSqlClient, name: str) -> str:
    """The connection string of instance ``name``, from the environment's own URL."""
    cfg = cloudsql_config(env)
    found = client.find_instance(name)
    if found is None:
        raise RollbotError(f"no Cloud SQL instance {name!r} in project {cfg.project!r} (HTTP 404)")
    host, port = endpoint(cfg, found)
    return url_with_endpoint(env.database_url(), host, port)
