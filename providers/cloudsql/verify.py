"""The runbook's verify, connected to where the database now lives: the new instance a clone
declared (its IP from ``instances.get``, or the configured proxy), else the environment's own
database URL (an in-place backup restore does not move the database)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bot.config import EnvironmentConfig
from bot.errors import RollbotError
from bot.steps import DatabaseTarget, Plan, StepContext, StepResult, register_step
from providers.cloudsql.access import client_for, cloudsql_config, instance_url, label
from providers.postgres.steps import verify_words


def connection_url(env: EnvironmentConfig, target: DatabaseTarget) -> str:
    """The connection string of the instance ``target`` names: the environment's own URL
    (the source's credentials, by env-var reference) with that instance's host and port."""
    name = target.ref.get("instance")
    if not name:
        raise RollbotError(f"{target.label} does not name a Cloud SQL instance")
    project = target.ref.get("project")
    cfg = cloudsql_config(env)
    if project and project != cfg.project:
        raise RollbotError(
            f"{target.label} is in project {project}, not {cfg.project}: rollbot only reaches "
            "instances of the environment's project"
        )
    return instance_url(env, client_for(env), name)


@register_step
@dataclass
class CloudSqlVerifyStep:
    expected_head: str | None = None
    kind: ClassVar[str] = "cloudsql.verify"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        env = ctx.environment
        cfg = cloudsql_config(env)
        return Plan(
            title="Verify the database where it now lives",
            target=f"the restored instance, else {label(cfg, cfg.instance)}",
            action=f"connect (source credentials, the instance's {cfg.ip_type} IP or the "
            f"configured proxy), {verify_words(env)}",
        )

    def run(self, ctx: StepContext) -> StepResult:
        from providers.postgres.steps import verify_at

        env, target = ctx.environment, ctx.declared_target()
        moved = target is not None and "instance" in target.ref
        url = connection_url(env, target) if moved and target else env.database_url()
        result = verify_at(ctx, url, self.expected_head)
        cfg = cloudsql_config(env)
        checked = target.label if moved and target else label(cfg, cfg.instance)
        return StepResult(result.ok, result.summary, {**result.data, "checked": checked})
