"""pgBackRest PITR without a server: configuration, the window's rules, archive warnings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import EnvironmentConfig, PitrConfig, load_settings
from bot.errors import ConfigError, RollbotError
from bot.methods import plan_steps
from handlers.runtime import register_provider_steps
from providers.pgbackrest.window import Archiver, BackupSet, Window, archive_warnings

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
register_provider_steps()


def _window() -> Window:
    backup = BackupSet(
        "20261203-100000F", "full", NOW - timedelta(hours=2), NOW - timedelta(hours=2) +
        timedelta(seconds=30), "000000010000000000000002", "000000010000000000000003", 1, 1,
    )  # fmt: skip
    arch = Archiver("000000010000000000000009", NOW - timedelta(minutes=1), None, None, 0,
                    "00000001000000000000000A", "on")  # fmt: skip
    return Window([backup], "000000010000000000000009", arch)


def test_unknown_tool_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    cfg = tmp_path / "rollbot.toml"
    cfg.write_text(
        '[environments.prod]\ntier = "production"\ndatabase_url_env = "X_URL"\n'
        '[environments.prod.pitr]\ntool = "barman"\nstanza = "main"\ndata_directory = "/d"\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(cfg)
    assert "unknown PITR tool 'barman'" in str(refused.value)
    assert "environments.prod.pitr.tool" in str(refused.value)


def test_pitr_without_a_tool_plans_the_stand_in_and_says_so() -> None:
    env = EnvironmentConfig(name="p", tier="production", database_url_env="X_URL")
    (restore, _verify) = plan_steps("pitr", env, {})
    assert restore.kind == "postgres.restore" and "no [pitr] tool configured" in restore.title
    env = env.model_copy(
        update={"pitr": PitrConfig(tool="pgbackrest", stanza="s", data_directory=Path("/d"))}
    )
    assert [s.kind for s in plan_steps("pitr", env, {})][:3] == [
        "pgbackrest.restore",
        "pgbackrest.verify",
        "pgbackrest.switch",
    ]


@pytest.mark.parametrize(
    ("offset", "words"),
    [
        (timedelta(minutes=5), "in the future"),
        (timedelta(seconds=-30), "outside the restorable window"),  # after the newest WAL
        (timedelta(hours=-3), "outside the restorable window"),  # before the oldest backup
        (timedelta(hours=-2, seconds=10), "no pgBackRest backup finished before"),
    ],
)
def test_targets_outside_the_window_are_refused(offset: timedelta, words: str) -> None:
    with pytest.raises(RollbotError) as refused:
        _window().check_target(NOW + offset, NOW)
    assert words in str(refused.value)


def test_a_target_inside_the_window_starts_from_the_newest_backup_before_it() -> None:
    window = _window()
    window.check_target(NOW - timedelta(minutes=30), NOW)
    backup = window.backup_for(NOW - timedelta(minutes=30))
    assert backup.label == "20261203-100000F"
    assert window.wal_after(backup) == (8, 8 * 16 * 1024 * 1024)


def test_failing_and_lagging_archives_are_warnings() -> None:
    healthy = _window().archiver
    assert healthy is not None and archive_warnings(healthy, NOW, 300) == []
    failing = Archiver(healthy.last_archived_wal, healthy.last_archived_time,
                       "00000001000000000000000A", NOW, 3, healthy.current_wal, "on")  # fmt: skip
    assert "FAILING" in archive_warnings(failing, NOW, 300)[0]
    lagging = Archiver("000000010000000000000002", NOW - timedelta(hours=1), None, None, 0,
                       "000000010000000000000010", "on")  # fmt: skip
    assert "LAGGING: 13 segments behind" in archive_warnings(lagging, NOW, 300)[0]
