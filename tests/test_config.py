from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError, NotFoundError
from handlers.cli import main

REPO = Path(__file__).resolve().parents[1]

BROKEN = """
database_url_in_file = "postgresql://admin:hunter2@db.example.com/prod"

[approvals.production]
requester_may_approve = true

[business_hours]
timezone = "Mars/Olympus"
days = ["mon", "funday"]

[environments.production]
tier = "prod"
provider = "oracle"
database_url_env = "lowercase name"

[environments.staging]
provider = "neon"
database_url_env = "DATABASE_URL_STAGING"
tier = "staging"
"""


def test_example_file_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(REPO / "rollbot.example.toml")]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "production:  production (rds)" in out


def test_broken_file_lists_every_problem_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rollbot.toml"
    path.write_text(BROKEN)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    text = "\n".join(err)
    assert all(line.startswith("rollbot: ") for line in err)
    for expected in (
        "database_url_in_file: looks like a secret",
        "approvals.production.requester_may_approve: must be false",
        "unknown time zone 'Mars/Olympus'",
        "funday",
        "environments.production.tier",
        "environments.production.provider",
        "'lowercase name' is not an environment variable name",
        "provider 'neon' needs a [neon] section",
    ):
        assert expected in text, expected
    assert "hunter2" not in text
    assert "Traceback" not in text


def test_missing_file_and_bad_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 2
    assert "configuration file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[slack\n")
    assert main(["check-config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_require_env_fails_when_secret_vars_unset(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for tier in ("DEVELOPMENT", "STAGING", "PRODUCTION"):
        monkeypatch.delenv(f"DATABASE_URL_{tier}", raising=False)
    assert main(["check-config", "--require-env", str(REPO / "rollbot.example.toml")]) == 2
    assert "$DATABASE_URL_PRODUCTION is not set" in capsys.readouterr().out


def test_env_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBOT_SLACK__INCIDENTS_CHANNEL", "#inc-test")
    monkeypatch.setenv("ROLLBOT_DATABASE_URL", "sqlite:///elsewhere.db")
    settings = load_settings(REPO / "rollbot.example.toml")
    assert settings.slack.incidents_channel == "#inc-test"
    assert settings.database_url == "sqlite:///elsewhere.db"
    assert settings.slack.devops_channel == "#devops-team"


def test_environment_lookup_and_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(REPO / "rollbot.example.toml")
    with pytest.raises(NotFoundError, match="valid: development, staging, production"):
        settings.environment("prod")
    assert settings.resolve_environment("production").name == "production"
    env = settings.environment("production")
    monkeypatch.delenv("DATABASE_URL_PRODUCTION", raising=False)
    with pytest.raises(ConfigError, match=r"\$DATABASE_URL_PRODUCTION is not set"):
        env.database_url()
    monkeypatch.setenv("DATABASE_URL_PRODUCTION", "postgresql://u:pw@h/db")
    assert env.database_url() == "postgresql://u:pw@h/db"
    assert env.migrations_dir == REPO / "migrations"


def test_business_hours() -> None:
    hours = load_settings(REPO / "rollbot.example.toml").business_hours
    assert hours.is_open(datetime(2026, 11, 24, 10, 0, tzinfo=UTC))  # Tue 11:00 Berlin
    assert not hours.is_open(datetime(2026, 11, 24, 20, 0, tzinfo=UTC))  # evening
    assert not hours.is_open(datetime(2026, 11, 28, 10, 0, tzinfo=UTC))  # Saturday
    assert not hours.is_open(datetime(2026, 12, 24, 10, 0, tzinfo=UTC))  # holiday


def test_embedded_default_has_every_tier(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ROLLBOT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.source == "embedded default"
    assert sorted(e.tier for e in settings.environments.values()) == [
        "development",
        "production",
        "staging",
    ]


def test_unexpected_errors_are_one_secret_free_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import handlers.commands.check_config as check_config

    def boom(_args: object) -> int:
        raise OSError("disk full writing postgresql://app:hunter2@db/prod")

    monkeypatch.setattr(check_config, "run", boom)
    monkeypatch.delenv("ROLLBOT_DEBUG", raising=False)
    assert main(["check-config", str(REPO / "rollbot.example.toml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rollbot: unexpected error: OSError: disk full")
    assert "hunter2" not in err[0]


PROVIDER_SECTIONS = """
[environments.staging]
tier = "staging"
provider = "neon"
database_url_env = "DATABASE_URL_STAGING"

[environments.staging.neon]
api_key_env = "not a name"
colour = "blue"

[environments.production]
tier = "production"
database_url_env = "DATABASE_URL_PRODUCTION"

[environments.production.postgres]
port = 5432
"""


def test_a_provider_section_is_checked_by_the_provider_s_own_model(tmp_path: Path) -> None:
    """The section's fields are reported where the file spells them, all in one pass."""
    path = tmp_path / "rollbot.toml"
    path.write_text(PROVIDER_SECTIONS)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    text = str(caught.value)
    for expected in (
        "environments.staging.neon.project_id: required setting is missing",
        "environments.staging.neon.api_key_env: 'not a name' is not an environment variable",
        "environments.staging.neon.colour: unknown setting",
        "environments.production: provider 'postgres' takes no [postgres] section",
    ):
        assert expected in text, (expected, text)


def test_a_valid_section_becomes_the_provider_s_model(tmp_path: Path) -> None:
    from providers.neon.config import NeonConfig

    path = tmp_path / "rollbot.toml"
    path.write_text(
        '[environments.staging]\ntier = "staging"\nprovider = "neon"\n'
        'database_url_env = "DATABASE_URL_STAGING"\n'
        '[environments.staging.neon]\nproject_id = "p-1"\napi_key_env = "STAGING_NEON_KEY"\n'
    )
    env = load_settings(path).environment("staging")
    assert isinstance(env.section, NeonConfig) and env.section.project_id == "p-1"
    assert env.secret_env_vars() == ["DATABASE_URL_STAGING", "STAGING_NEON_KEY"]


def test_check_config_says_when_nobody_would_be_paged(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY", raising=False)
    monkeypatch.delenv("PAGERDUTY_CTO_ROUTING_KEY", raising=False)
    assert main(["check-config", str(REPO / "rollbot.example.toml")]) == 0
    assert (
        "after hours: NOBODY is paged ($PAGERDUTY_ROUTING_KEY is not set)"
        in capsys.readouterr().out
    )
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "0a1b2c3d4e5f60718293a4b5c6d7e8f9")
    assert main(["check-config", str(REPO / "rollbot.example.toml")]) == 0
    assert "after hours: on-call via $PAGERDUTY_ROUTING_KEY" in capsys.readouterr().out


def test_worker_cpu_is_low_or_idle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = (REPO / "rollbot.example.toml").read_text()
    assert load_settings(REPO / "rollbot.example.toml").slack.worker_cpu == "low"
    path = tmp_path / "rollbot.toml"
    path.write_text(example.replace('worker_cpu = "low"', 'worker_cpu = "idle"', 1))
    assert load_settings(path).slack.worker_cpu == "idle"
    path.write_text(example.replace('worker_cpu = "low"', 'worker_cpu = "fast"', 1))
    assert main(["check-config", str(path)]) == 2
    assert "slack.worker_cpu" in capsys.readouterr().err
