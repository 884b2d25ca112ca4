"""Steps for the app around a rollback: the app-deployment rollback by webhook (the command
form is the core's ``command`` step) and the runbook's "update DATABASE_URL and redeploy"
after a restore into a new branch or instance, on any platform.

The repoint hands the new connection string over only where nobody reads it: the
command's environment (``$ROLLBOT_NEW_DATABASE_URL``, never its command line) or the
webhook's body (over the team's own HTTPS). Without either, a person does it: the step
waits for them and records who said it was done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from bot.config import EnvironmentConfig, WebhookConfig
from bot.errors import RollbotError
from bot.methods import target_url
from bot.redact import redact, register_secret
from bot.shell import command_environment
from bot.steps import (
    DatabaseTarget,
    Plan,
    StepContext,
    StepResult,
    register_step,
    run_command,
)
from providers.deploy import webhook

NEW_URL_VAR = "ROLLBOT_NEW_DATABASE_URL"
TAIL_LINES = 20


def _where(env: EnvironmentConfig) -> str:
    return f"{env.name} ({env.tier})"


@register_step
@dataclass
class AppRollbackWebhook:
    """The runbook's "app completely broken": roll the deployment back, keep the database."""

    kind: ClassVar[str] = "deploy.app_rollback"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        hook = _app_hook(ctx.environment)
        return Plan(
            title="Roll back the app deployment (database kept)",
            target=f"{_where(ctx.environment)}: the deployed app",
            action=f"{hook.method} {hook.url} (your deploy system rolls the app back)",
            data_loss="none in the database; the app returns to its previous release",
            estimated=f"up to {hook.timeout_seconds:g} s for the webhook to answer",
        )

    def run(self, ctx: StepContext) -> StepResult:
        hook = _app_hook(ctx.environment)
        ctx.record_intent(webhook=hook.url)
        answer = webhook.call(hook, ctx.facts)
        ctx.report(answer.line("app rollback"))
        data = {"status": answer.status, "tail": answer.tail}
        return StepResult(answer.ok, answer.line("app rollback")[:1000], data)

    def after_interruption(self, ctx: StepContext, remove: bool) -> list[str]:
        if not ctx.external.get("intent"):
            return ["the webhook was not called"]
        return ["the app rollback webhook may have been called: check your deploy system"]


def _app_hook(env: EnvironmentConfig) -> WebhookConfig:
    hook = env.deploy.app_rollback_webhook
    if hook is None:
        raise RollbotError(f"{env.name!r} has no [environments.{env.name}.deploy] webhook")
    return hook


@register_step
@dataclass
class Repoint:
    """Point the app at where an earlier step said the database now lives, and redeploy."""

    kind: ClassVar[str] = "deploy.repoint"
    destructive: ClassVar[bool] = False

    def plan(self, ctx: StepContext) -> Plan:
        env = ctx.environment
        command, hook = repoint_command(env), env.deploy.repoint_webhook
        if command:
            action = f"run `{command}` with the new connection string in ${NEW_URL_VAR}"
        elif hook:
            action = f"{hook.method} {hook.url} with the new connection string in its body"
        else:
            action = (
                "a person sets DATABASE_URL to the restored database and redeploys, then "
                "clicks Done (no repoint command or webhook is configured)"
            )
        return Plan(
            title="Point the app at the restored database and redeploy",
            target=f"{_where(env)}: the app's DATABASE_URL",
            action=action,
            data_loss="none; the old database is kept as it was, its connections drop when the "
            "app restarts",
        )

    def run(self, ctx: StepContext) -> StepResult:
        env, target = ctx.environment, ctx.declared_target()
        if target is None:
            return StepResult(True, "the database did not move: nothing to point the app at")
        url = target_url(env, target)
        register_secret(urlsplit(url).password)
        command, hook = repoint_command(env), env.deploy.repoint_webhook
        if command:
            return _run_command(ctx, command, url, target)
        if hook:
            answer = webhook.call(hook, {**ctx.facts, "new_database_url": url})
            summary = answer.line("repoint") + f" ({target.label})"
            return StepResult(answer.ok, summary[:1000], {"status": answer.status})
        todo = f"set DATABASE_URL to {redact(url)} ({target.label}) and redeploy."
        return StepResult(True, f"waits for a person: {todo}", waits_for_person=todo)


def repoint_command(env: EnvironmentConfig) -> str | None:
    """``[deploy] repoint_command``, or a provider section's own (Neon's, from before)."""
    return env.deploy.repoint_command or getattr(env.section, "repoint_command", None)


def _run_command(ctx: StepContext, command: str, url: str, target: DatabaseTarget) -> StepResult:
    variables = {**command_environment(ctx.environment), NEW_URL_VAR: url}
    ran = run_command(ctx, command, variables, TAIL_LINES)
    said = ran.said("repoint command")
    if ran.code == 0:
        said += f": the app now points at {target.label}"
    return StepResult(ran.code == 0, said, {"exit_code": ran.code, "tail": ran.tail})
