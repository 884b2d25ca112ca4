"""The runbook's verify, against the restored instance (not the source the app left)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bot.errors import RollbotError
from bot.steps import Plan, StepContext, StepResult, register_step
from providers.postgres.steps import verify_words
from providers.rds.access import connection_url, rds_config, reachable_url


@register_step
@dataclass
class RdsVerifyStep:
    expected_head: str | None = None
    kind: ClassVar[str] = "rds.verify"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        env, cfg = ctx.environment, rds_config(ctx.environment)
        via = (
            f" through {cfg.connect_host or 'the endpoint host'}:{cfg.connect_port or 'its port'}"
            " (connect_host/connect_port)"
            if cfg.connect_host or cfg.connect_port
            else ""
        )
        return Plan(
            title="Verify the database on the restored instance",
            target=f"the restored copy of {cfg.instance_id or cfg.cluster_id}",
            action=f"connect to the new endpoint{via} with the environment's credentials, "
            f"{verify_words(env)}",
        )

    def run(self, ctx: StepContext) -> StepResult:
        from providers.postgres.steps import verify_at

        target = ctx.declared_target()
        if target is None or "instance_id" not in target.ref:
            raise RollbotError(
                "no restored RDS instance was declared by an earlier step: nothing to verify "
                "(the restore step must succeed first)"
            )
        env = ctx.environment
        url = reachable_url(env, connection_url(env, target))
        result = verify_at(ctx, url, self.expected_head)
        data = {**result.data, "instance_id": target.ref["instance_id"]}
        return StepResult(result.ok, result.summary, data)
