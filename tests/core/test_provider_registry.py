"""The core asks the environment's provider which steps a method means; it names none."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from bot import methods
from bot.config import EnvironmentConfig
from bot.errors import RollbotError
from bot.methods import StepSpec, plan_steps
from bot.service import Rollbot


@dataclass(frozen=True)
class RecordingProvider:
    """Plans every method as one command step, and remembers what it was asked."""

    name: str
    asked: list[tuple[str, dict[str, Any]]]

    def steps_for(
        self, method_id: str, env: EnvironmentConfig, options: dict[str, Any]
    ) -> list[StepSpec]:
        self.asked.append((method_id, options))
        return [StepSpec("command", f"{method_id} on {env.name}", {"command": "app_rollback"})]


def test_plan_steps_asks_the_environments_provider(
    bot: Rollbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = bot.settings.environment("production")
    asked: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setitem(methods._PROVIDERS, env.provider, RecordingProvider(env.provider, asked))
    (spec,) = plan_steps("pitr", env, {"restore_to": "2026-01-01T00:00:00+00:00"})
    assert spec.title == "pitr on production"
    assert asked == [("pitr", {"restore_to": "2026-01-01T00:00:00+00:00"})]


def test_the_runbooks_own_rules_come_before_any_provider(bot: Rollbot) -> None:
    with pytest.raises(RollbotError, match="development reset is refused"):
        plan_steps("dev_reset", bot.settings.environment("production"))


def test_a_provider_missing_from_the_build_is_named(
    bot: Rollbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = bot.settings.environment("production")
    monkeypatch.delitem(methods._PROVIDERS, env.provider)
    with pytest.raises(RollbotError, match=f"uses provider '{env.provider}', which this rollbot"):
        plan_steps("forward_fix", env)
