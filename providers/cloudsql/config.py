"""The ``[environments.NAME.cloudsql]`` section: which project and instance, which credentials."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bot.config import EnvVarName


class CloudSqlConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str
    instance: str
    credentials_env: EnvVarName | None = "GOOGLE_APPLICATION_CREDENTIALS"
    api_url: str = "https://sqladmin.googleapis.com/"

    def secret_env_vars(self) -> list[str]:
        return [self.credentials_env] if self.credentials_env else []
