"""Configuration: one TOML file plus ``ROLLBOT_*`` environment variables.

Secrets are never written in the file: it names the environment variables that
hold them (``database_url_env``, ``api_key_env``, ...), so the file can be
committed and reviewed. Environment variables override the file
(``ROLLBOT_DATABASE_URL``, ``ROLLBOT_SLACK__INCIDENTS_CHANNEL``, ...).
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bot.errors import ConfigError, NotFoundError
from bot.redact import register_env_secrets, register_secret

Tier = Literal["development", "staging", "production"]
TIERS: tuple[Tier, ...] = ("development", "staging", "production")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_SECRET_IN_TEXT = re.compile(r"://[^/\s:@]+:[^@\s]+@|xox[abp]-|AKIA[0-9A-Z]{16}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_var_name(value: str) -> str:
    if not ENV_VAR_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (A-Z, 0-9, _)")
    return value


EnvVarName = Annotated[str, AfterValidator(_env_var_name)]


def _env_name(value: str) -> str:
    if not re.match(r"^[a-z0-9][a-z0-9_-]*$", value):
        raise ValueError(f"environment names must be lowercase words, not {value!r}")
    return value


# Checked as the key of [environments.NAME], beside its values' problems, not after them.
EnvName = Annotated[str, AfterValidator(_env_name)]


WorkerCpu = Literal["idle", "low"]  # how the worker yields the CPU ([slack] worker_cpu)


class SlackConfig(_Strict):
    incidents_channel: str = "#incidents"
    devops_channel: str = "#devops-team"
    # Unfinished requests in the inbox beyond which new ones are refused at the ack
    # ("not recorded, retry") instead of acknowledged and left to wait.
    inbox_high_water: int = Field(500, ge=10, le=100_000)
    # How the worker yields the CPU to the acks: "low" (nice 10) or "idle" (also Linux
    # SCHED_IDLE: an ack that wakes takes the CPU at once, and the worker runs only on
    # what the host leaves over; on a host saturated by other work it then all but stops,
    # and an unprivileged process cannot leave SCHED_IDLE again). "idle" suits a host
    # that runs rollbot alone.
    worker_cpu: WorkerCpu = "low"
    # Mentioned in the devops channel when an incident needs attention in business hours:
    # a Slack user id (U...) or user-group id (S...).
    database_admin: str | None = None

    @field_validator("database_admin")
    @classmethod
    def _slack_id(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[US][A-Z0-9]{2,}$", value):
            raise ValueError(f"{value!r} is not a Slack user id (U...) or user-group id (S...)")
        return value


class CliConfig(_Strict):
    """Who a terminal user may act as: OS user -> the identities (Slack user ids or
    names) they may claim with ``--as`` or ``$ROLLBOT_ACTOR``. One identity is the
    default; without a mapping a CLI user acts as their OS user name."""

    identities: dict[str, tuple[str, ...]] = Field(default_factory=dict)


class ApprovalTierConfig(_Strict):
    """Who may approve a destructive step in one tier, how many, and for how long."""

    min_approvals: int = Field(1, ge=0, le=5)
    requester_may_approve: bool = True
    ttl_minutes: int = Field(30, ge=1, le=24 * 60)
    users: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None


class ProductionApprovalConfig(ApprovalTierConfig):
    """Production's policy. Its safety rules are checked field by field, not after the
    whole section is valid, so ``check-config`` reports them with every other problem."""

    requester_may_approve: bool = False

    @field_validator("requester_may_approve")
    @classmethod
    def _second_person(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "must be false in production (runbook safety rule: someone other than the "
                "requester approves)"
            )
        return value

    @field_validator("min_approvals")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1 in production")
        return value


def _default_approval_tiers() -> dict[str, ApprovalTierConfig]:
    return {
        "development": ApprovalTierConfig(min_approvals=0, requester_may_approve=True),
        "staging": ApprovalTierConfig(min_approvals=1, requester_may_approve=True),
        "production": ProductionApprovalConfig(min_approvals=1, requester_may_approve=False),
    }


class ApprovalsConfig(_Strict):
    """Default approvers (Slack user ids ``U…`` / user-group ids ``S…``) and per-tier policy."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    development: ApprovalTierConfig = _default_approval_tiers()["development"]
    staging: ApprovalTierConfig = _default_approval_tiers()["staging"]
    production: ProductionApprovalConfig = ProductionApprovalConfig()
    # Waiting for approval: a reminder to devops after this long, then on-call is paged.
    remind_after_minutes: int = Field(15, ge=1)
    page_after_minutes: int = Field(30, ge=1)

    @field_validator("page_after_minutes")
    @classmethod
    def _page_after_reminder(cls, value: int, info: ValidationInfo) -> int:
        # A field check (not a model one) so it is reported with the section's other problems.
        remind = info.data.get("remind_after_minutes")
        if remind is not None and value <= remind:
            raise ValueError(f"must be more than remind_after_minutes ({remind})")
        return value

    def for_tier(self, tier: Tier) -> ApprovalTierConfig:
        return getattr(self, tier)


class BusinessHoursConfig(_Strict):
    timezone: str = "UTC"
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    start: time = time(9, 0)
    end: time = time(18, 0)
    holidays: tuple[date, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("days")
    @classmethod
    def _weekdays(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in value if d.lower() not in WEEKDAYS]
        if bad:
            raise ValueError(f"unknown day(s) {', '.join(bad)}; use {', '.join(WEEKDAYS)}")
        return tuple(d.lower() for d in value)

    @field_validator("end")
    @classmethod
    def _start_before_end(cls, value: time, info: ValidationInfo) -> time:
        # A field check (not a model one) so it is reported with a bad timezone or day.
        start = info.data.get("start")
        if start is not None and start >= value:
            raise ValueError(f"start {start} must be before end {value}")
        return value

    def is_open(self, moment: datetime) -> bool:
        """True during business hours (then notify #devops-team; otherwise page on-call)."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        return (
            local.date() not in self.holidays
            and WEEKDAYS[local.weekday()] in self.days
            and self.start <= local.time() < self.end
        )


class RemindersConfig(_Strict):
    """Reminders rollbot keeps as durable timers (``bot.timers``); cron lines are read in
    the business-hours time zone."""

    drill_cron: str = "0 10 1 1,4,7,10 *"  # the quarterly restore drill
    runbook_review_cron: str = "0 10 15 1,4,7,10 *"
    postmortem_after_days: int = Field(3, ge=1)
    timer_sweep_seconds: float = Field(5.0, gt=0, le=300)

    @field_validator("drill_cron", "runbook_review_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a crontab line (minute hour day month weekday): {exc}"
            ) from None
        return value


class PagerDutyConfig(_Strict):
    routing_key_env: EnvVarName | None = "PAGERDUTY_ROUTING_KEY"
    cto_routing_key_env: EnvVarName | None = "PAGERDUTY_CTO_ROUTING_KEY"
    api_token_env: EnvVarName | None = "PAGERDUTY_API_TOKEN"
    escalation_policy_id: str | None = None


class RetentionConfig(_Strict):
    keep_last: int | None = Field(10, ge=1)
    keep_days: int | None = Field(30, ge=1)


class CommandsConfig(_Strict):
    """The team's own commands; rollbot runs only these, never text typed in Slack."""

    generate: str | None = None
    migrate: str | None = None
    integration_tests: str | None = None
    app_rollback: str | None = None
    workdir: Path = Path(".")
    timeout_seconds: int = Field(900, ge=1)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


HttpUrlText = Annotated[str, AfterValidator(_http_url)]


class ChecksConfig(_Strict):
    """``[environments.NAME.checks]``: what rollbot checks after a rollback (the runbook's
    "run smoke tests, monitor error rates"). Cross-field rules are field checks, so
    ``check-config`` reports each with the section's other problems, in one pass."""

    health_urls: tuple[HttpUrlText, ...] = ()  # each must answer 2xx within timeout_seconds
    health_expect: str | None = None  # ... and, when set, its body must contain this text
    smoke_command: str | None = None  # the team's smoke tests, run like [commands]
    prometheus_url: HttpUrlText | None = None
    error_rate_query: str | None = Field(None, validate_default=True)
    error_rate_url: HttpUrlText | None = None  # a JSON endpoint, read at error_rate_field
    error_rate_field: str = "error_rate"
    error_rate_threshold: float = Field(0.05, ge=0)
    watch_minutes: int = Field(30, ge=1)
    every_minutes: int = Field(5, ge=1)
    timeout_seconds: float = Field(10, gt=0)

    @field_validator("error_rate_query")
    @classmethod
    def _query_with_prometheus(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "prometheus_url" not in info.data:
            return value  # a bad prometheus_url is reported on its own
        prometheus = info.data["prometheus_url"]
        if value and not prometheus:
            raise ValueError("needs prometheus_url (the Prometheus server to ask)")
        if prometheus and not value:
            raise ValueError("prometheus_url is set: give the PromQL query to run there")
        return value

    @field_validator("error_rate_url")
    @classmethod
    def _one_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and info.data.get("prometheus_url"):
            raise ValueError("set either prometheus_url (with error_rate_query) or this, not both")
        return value

    @field_validator("error_rate_field")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", value):
            raise ValueError(f"{value!r} is not a dotted field path like data.error_rate")
        return value

    @field_validator("every_minutes")
    @classmethod
    def _within_watch(cls, value: int, info: ValidationInfo) -> int:
        watch = info.data.get("watch_minutes")
        if watch is not None and value > watch:
            raise ValueError(f"must not exceed watch_minutes ({watch})")
        return value

    def has_error_rate_source(self) -> bool:
        return bool(self.error_rate_query or self.error_rate_url)

    def any_configured(self) -> bool:
        """Whether there is anything to check after a rollback."""
        return bool(self.health_urls or self.smoke_command or self.has_error_rate_source())


# What a webhook body may name; the repoint's new connection string only in its own body.
WEBHOOK_FIELDS = ("incident", "environment", "tier", "requester", "method")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(_placeholders(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_placeholders(v) for v in value))
    return set()


class WebhookConfig(_Strict):
    """An HTTP call to the team's deploy system. Header values are named by environment
    variable (they are usually tokens), never written in the file. Strings in ``body`` may
    hold ``{incident}``, ``{environment}``, ``{tier}``, ``{requester}`` and ``{method}`` (the
    repoint webhook also ``{new_database_url}``)."""

    url: HttpUrlText
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers_env: dict[str, EnvVarName] = {}
    body: dict[str, Any] = {}
    timeout_seconds: float = Field(60, gt=0, le=3600)

    def fields(self) -> set[str]:
        return _placeholders(self.body)

    def secret_env_vars(self) -> list[str]:
        return list(self.headers_env.values())


class DeployConfig(_Strict):
    """``[environments.NAME.deploy]``: how rollbot rolls the app back by webhook (the command
    is ``[commands] app_rollback``), and how it points the app at a restored database: a
    command that gets the new URL in ``$ROLLBOT_NEW_DATABASE_URL``, a webhook, or neither
    (a person does it and says so on the card)."""

    app_rollback_webhook: WebhookConfig | None = None
    repoint_command: str | None = None
    repoint_webhook: WebhookConfig | None = None

    @field_validator("app_rollback_webhook")
    @classmethod
    def _app_fields(cls, value: WebhookConfig | None) -> WebhookConfig | None:
        unknown = sorted(value.fields() - set(WEBHOOK_FIELDS)) if value else []
        if unknown:
            raise ValueError(f"body names {unknown}; it may name {list(WEBHOOK_FIELDS)}")
        return value

    @field_validator("repoint_webhook")
    @classmethod
    def _repoint_fields(
        cls, value: WebhookConfig | None, info: ValidationInfo
    ) -> WebhookConfig | None:
        if value and info.data.get("repoint_command"):
            raise ValueError("set either repoint_command or repoint_webhook, not both")
        allowed = {*WEBHOOK_FIELDS, "new_database_url"}
        unknown = sorted(value.fields() - allowed) if value else []
        if unknown:
            raise ValueError(f"body names {unknown}; it may name {sorted(allowed)}")
        if value and "new_database_url" not in value.fields():
            raise ValueError("its body must carry {new_database_url} (the restored database)")
        return value

    def secret_env_vars(self) -> list[str]:
        hooks = (self.app_rollback_webhook, self.repoint_webhook)
        return [name for hook in hooks if hook for name in hook.secret_env_vars()]


class PitrConfig(_Strict):
    """``[environments.NAME.pitr]``: real point-in-time restore from archived WAL, by a tool a
    provider registered (``PitrConfig.tools``). The restored cluster goes to
    ``restore_directory`` on ``restore_port`` (a free port when unset); the switch then swaps
    it in for ``data_directory`` on this host, or runs ``repoint_command`` (which gets the new
    URL in ``$ROLLBOT_NEW_DATABASE_URL``, never on its command line)."""

    tools: ClassVar[set[str]] = set()
    tool: str
    stanza: str
    config_path: Path = Path("/etc/pgbackrest/pgbackrest.conf")
    data_directory: Path
    restore_directory: Path | None = None
    restore_port: int | None = Field(None, ge=1, le=65535)
    restore_host: str = "127.0.0.1"
    repoint_command: str | None = None
    os_user: str = "postgres"
    bindir: Path | None = None
    archive_lag_seconds: int = Field(300, ge=1)

    @field_validator("tool")
    @classmethod
    def _known_tool(cls, value: str) -> str:
        if value not in cls.tools:
            known = ", ".join(sorted(cls.tools)) or "none"
            raise ValueError(f"unknown PITR tool {value!r}; this rollbot build has: {known}")
        return value


# A provider's own settings live with the provider (``providers/<name>/config.py``) and are
# registered by the composition root before the file is loaded: the core names none.
_PROVIDER_SECTIONS: dict[str, type[BaseModel] | None] = {}


def register_provider_section(provider: str, model: type[BaseModel] | None) -> None:
    """Declare a provider (and the model of its ``[environments.NAME.<provider>]`` section)."""
    _PROVIDER_SECTIONS[provider] = model


def known_providers() -> list[str]:
    return sorted(_PROVIDER_SECTIONS)


def _known_provider(value: str) -> str:
    if value not in _PROVIDER_SECTIONS:
        known = ", ".join(known_providers()) or "none registered"
        raise ValueError(f"unknown provider {value!r}; this rollbot build has: {known}")
    return value


class EnvironmentConfig(_Strict):
    name: str = ""
    tier: Tier
    provider: Annotated[str, AfterValidator(_known_provider)] = "postgres"
    database_url_env: EnvVarName
    backups: str = "backups"
    backups_s3_endpoint_url: str | None = None
    retention: RetentionConfig = RetentionConfig()
    migrations_dir: Path | None = None
    migrations_table: str = "drizzle.__drizzle_migrations"
    smoke_queries: tuple[str, ...] = ()
    checks: ChecksConfig = ChecksConfig()
    deploy: DeployConfig = DeployConfig()
    commands: CommandsConfig = CommandsConfig()
    pitr: PitrConfig | None = None
    # The provider's own section, validated by the model it registered (see above).
    section: Any = Field(None, validate_default=True)

    @field_validator("migrations_table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$", value):
            raise ValueError(f"{value!r} is not a table name like schema.table")
        return value

    @model_validator(mode="before")
    @classmethod
    def _take_provider_section(cls, data: Any) -> Any:
        """``[environments.NAME.neon]`` becomes ``section`` when the provider is ``neon``."""
        if isinstance(data, dict) and "section" not in data:
            provider = data.get("provider", "postgres")
            if isinstance(provider, str) and provider in data:
                section = data[provider]
                data = {k: v for k, v in data.items() if k != provider}
                data["section"] = section
        return data

    @field_validator("section")
    @classmethod
    def _valid_section(cls, value: Any, info: ValidationInfo) -> Any:
        provider = info.data.get("provider")
        if not isinstance(provider, str) or provider not in _PROVIDER_SECTIONS:
            return value  # the unknown provider is reported on its own field
        model = _PROVIDER_SECTIONS[provider]
        if model is None:
            if value is not None:
                raise ValueError(f"provider {provider!r} takes no [{provider}] section")
            return None
        if isinstance(value, model):
            return value
        if value is None:
            try:
                return model()
            except ValidationError:
                raise ValueError(f"provider {provider!r} needs a [{provider}] section") from None
        return model.model_validate(value)

    def database_url(self) -> str:
        """The database URL from the environment variable this environment names."""
        value = os.environ.get(self.database_url_env)
        if not value:
            raise ConfigError(
                f"environment {self.name!r}: ${self.database_url_env} is not set "
                "(it must hold the database URL)"
            )
        register_secret(urlsplit(value).password)
        return value

    def secret_env_vars(self) -> list[str]:
        """The database URL's variable, the deploy webhooks' header variables and those the
        provider's section names as secret."""
        from_section = getattr(self.section, "secret_env_vars", None)
        return [
            self.database_url_env,
            *self.deploy.secret_env_vars(),
            *(from_section() if from_section else ()),
        ]


class Settings(BaseSettings):
    """The whole configuration; ``ROLLBOT_*`` variables override the file."""

    model_config = SettingsConfigDict(
        env_prefix="ROLLBOT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    database_url: str = "sqlite:///rollbot.db"
    audit_log: Path | None = None
    slack: SlackConfig = SlackConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    business_hours: BusinessHoursConfig = BusinessHoursConfig()
    pagerduty: PagerDutyConfig = PagerDutyConfig()
    reminders: RemindersConfig = RemindersConfig()
    cli: CliConfig = CliConfig()
    environments: dict[EnvName, EnvironmentConfig] = Field(default_factory=dict)
    source: str = "embedded default"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)

    @field_validator("environments")
    @classmethod
    def _named(cls, value: dict[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
        return {n: e.model_copy(update={"name": n}) for n, e in value.items()}

    def environment(self, name: str | None) -> EnvironmentConfig:
        if name and name in self.environments:
            return self.environments[name]
        valid = ", ".join(self.environments) or "(none configured)"
        raise NotFoundError(f"unknown environment {name!r}; valid: {valid}")

    def environments_in_tier(self, tier: str) -> list[EnvironmentConfig]:
        return [e for e in self.environments.values() if e.tier == tier]

    def resolve_environment(self, name_or_tier: str) -> EnvironmentConfig:
        """An environment by name, or the only one of a tier (``/rollback production``)."""
        if name_or_tier in self.environments:
            return self.environments[name_or_tier]
        in_tier = self.environments_in_tier(name_or_tier)
        if len(in_tier) == 1:
            return in_tier[0]
        return self.environment(name_or_tier)


EMBEDDED_DEFAULT: dict[str, Any] = {
    "environments": {
        tier: {
            "tier": tier,
            "provider": "postgres",
            "database_url_env": f"DATABASE_URL_{tier.upper()}",
            "backups": "backups",
        }
        for tier in TIERS
    }
}


def default_config_path() -> Path | None:
    explicit = os.environ.get("ROLLBOT_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("rollbot.toml")
    return local if local.exists() else None


def _format_error(source: str, err: dict[str, Any], data: dict[str, Any]) -> str:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("function-after", "[key]")]
    if loc[:1] == ["environments"] and loc[2:] == ["section"]:  # about the section as a whole
        del loc[2]
    elif loc[:1] == ["environments"] and loc[2:3] == ["section"]:  # as the file spells it
        env = (data.get("environments") or {}).get(loc[1])
        loc[2] = env.get("provider", "postgres") if isinstance(env, dict) else "section"
    where = ".".join(loc)
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown setting (check spelling; secrets go in env vars, named by *_env settings)"
    if err.get("type") == "missing":
        msg = "required setting is missing"
    return f"{source}: {where or '(top level)'}: {msg}"


def _secrets_written_in(data: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _secrets_written_in(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += _secrets_written_in(value, f"{path}[{i}]")
    elif isinstance(data, str) and _SECRET_IN_TEXT.search(data):
        found.append(path)
    return found


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    def absolute(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    envs = {}
    for name, env in settings.environments.items():
        commands = env.commands.model_copy(update={"workdir": absolute(env.commands.workdir)})
        backups = env.backups if "://" in env.backups else str(absolute(Path(env.backups)))
        envs[name] = env.model_copy(
            update={
                "migrations_dir": absolute(env.migrations_dir),
                "commands": commands,
                "backups": backups,
            }
        )
    return settings.model_copy(
        update={"environments": envs, "audit_log": absolute(settings.audit_log)}
    )


def load_settings(path: str | Path | None = None) -> Settings:
    """Load and validate; every problem is reported at once in a ConfigError."""
    config_path = Path(path) if path else default_config_path()
    if config_path is None:
        data: dict[str, Any] = EMBEDDED_DEFAULT
        source, base = "embedded default", Path.cwd()
    else:
        source, base = str(config_path), config_path.resolve().parent
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{config_path}: configuration file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path}: cannot read ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML ({exc})") from None
    problems = [
        f"{source}: {where}: looks like a secret written in the file; "
        "put it in an environment variable and name that variable here"
        for where in _secrets_written_in(data)
    ]
    try:
        settings = Settings(**data, source=source)
    except ValidationError as exc:
        problems += [_format_error(source, e, data) for e in exc.errors()]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    register_configured_secrets(settings)
    return _resolve_paths(settings, base)


def register_configured_secrets(settings: Settings) -> None:
    """Teach the redactor every secret the configuration names, before anything is said.

    Database URLs contribute their passwords (the rest of a URL is not secret); API
    keys, tokens and routing keys their whole value.
    """
    urls = [settings.database_url]
    for env in settings.environments.values():
        urls.append(os.environ.get(env.database_url_env) or "")
        register_env_secrets(n for n in env.secret_env_vars() if n != env.database_url_env)
    for url in urls:
        try:
            register_secret(urlsplit(url).password)
        except ValueError:  # not a URL: nothing to learn from it
            continue
    pd = settings.pagerduty
    register_env_secrets(
        n for n in (pd.routing_key_env, pd.cto_routing_key_env, pd.api_token_env) if n
    )
    register_env_secrets(SLACK_SECRET_ENV_VARS)


SLACK_SECRET_ENV_VARS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN")


def unset_env_vars(settings: Settings) -> list[str]:
    """Names of referenced secret environment variables that are not set here."""
    missing = []
    for env in settings.environments.values():
        missing += [f"{env.name}: ${n}" for n in env.secret_env_vars() if not os.environ.get(n)]
    return missing
