"""The ``[environments.NAME.cloudsql]`` section: which project and instance, which credentials,
and how rollbot reaches a restored instance's PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.config import EnvVarName

GOOGLE_API_URL = "https://sqladmin.googleapis.com/"


def is_google(api_url: str) -> bool:
    """Google's own endpoints (global, regional ``*.rep.googleapis.com``, mTLS)."""
    host = (urlsplit(api_url).hostname or "").lower()
    return host == "googleapis.com" or host.endswith(".googleapis.com")


class CloudSqlConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str
    instance: str
    # The variable naming a service-account key file. When it is set rollbot loads that file;
    # otherwise Google's application-default chain is used (GOOGLE_APPLICATION_CREDENTIALS,
    # `gcloud auth application-default login`, the metadata server on GCP).
    credentials_env: EnvVarName | None = "GOOGLE_APPLICATION_CREDENTIALS"
    api_url: str = GOOGLE_API_URL
    # "none" sends no Google credentials: for a local Admin API emulator (the tests' fake)
    # or a proxy that adds them. Refused for Google's own endpoints.
    auth: Literal["application_default", "none"] = "application_default"
    # The Admin API discovery document to build the client from; unset = the copy bundled
    # with google-api-python-client (no network). Tests pin the document the fake checks.
    discovery_document: Path | None = None
    # How rollbot (and the verify) reach an instance's PostgreSQL: the instance's IP of this
    # type from the Admin API, port 5432; or, for teams that go through the Cloud SQL Auth
    # Proxy on localhost, a fixed connect_host / connect_port.
    ip_type: Literal["PRIMARY", "PRIVATE"] = "PRIMARY"
    connect_host: str | None = None
    connect_port: int | None = Field(None, ge=1, le=65535)
    poll_seconds: float = Field(5.0, gt=0, le=60)
    # How long one API call may keep retrying (429, 503; 5xx and network errors for GET).
    api_wait_seconds: float = Field(120.0, gt=0, le=3600)
    # How long rollbot waits for a clone, backup or restore operation to be DONE.
    operation_timeout_seconds: float = Field(7200.0, gt=0)

    @model_validator(mode="after")
    def _credentials_for_google(self) -> CloudSqlConfig:
        if self.auth == "none" and is_google(self.api_url):
            raise ValueError(
                'auth = "none" is only for a local emulator or an authenticating proxy; '
                f"{self.api_url} is Google's API, which needs credentials"
            )
        return self

    def secret_env_vars(self) -> list[str]:
        return [self.credentials_env] if self.credentials_env else []
