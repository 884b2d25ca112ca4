"""The ``[environments.NAME.rds]`` section: which instance or Aurora cluster, in which region."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator


class RdsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_id: str | None = None
    cluster_id: str | None = None
    region: str = "us-east-1"
    endpoint_url: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RdsConfig:
        if bool(self.instance_id) == bool(self.cluster_id):
            raise ValueError("set exactly one of instance_id (RDS) or cluster_id (Aurora)")
        return self
