"""The ``[environments.NAME.neon]`` section: which Neon project and branch, and how to reach it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bot.config import EnvVarName


class NeonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    project_id: str
    # The environment's branch; unset means the project's default branch.
    branch_id: str | None = None
    api_key_env: EnvVarName = "NEON_API_KEY"
    api_url: str = "https://console.neon.tech/api/v2"
    # What the connection string rollbot asks for after a branch switch names.
    database_name: str = "neondb"
    role_name: str = "neondb_owner"
    # The team's command that points the app at a new branch (it gets the new URL in
    # $ROLLBOT_NEW_DATABASE_URL) and redeploys; without it a person does that step.
    repoint_command: str | None = None
    # Pre-migration branches (``rollbot migrate``) older than this are deleted; the newest stays.
    pre_migration_keep_days: int = Field(7, ge=1)
    poll_seconds: float = Field(1.0, gt=0, le=60)
    # How long one API call may keep retrying (423 locked, 429, 503, GET network errors).
    api_wait_seconds: float = Field(120.0, gt=0, le=3600)

    def secret_env_vars(self) -> list[str]:
        return [self.api_key_env]
