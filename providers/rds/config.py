"""The ``[environments.NAME.rds]`` section: which instance or Aurora cluster, in which region,
and what a restored copy gets when it should not simply copy the source's settings.

AWS credentials are never in this file: boto3 reads them from the standard chain
(environment, shared config/profile, SSO, instance or task role).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RdsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_id: str | None = None
    cluster_id: str | None = None  # Aurora: the cluster is restored, then an instance added
    region: str = "us-east-1"
    endpoint_url: str | None = None  # another RDS API endpoint (a VPC endpoint, a local moto)

    # What the restored copy gets instead of the source's value (unset = copied from the
    # source). For Aurora, instance_class is the new cluster's writer instance class.
    instance_class: str | None = None
    subnet_group: str | None = None
    security_group_ids: tuple[str, ...] | None = None
    parameter_group: str | None = None
    multi_az: bool | None = None
    tags: dict[str, str] | None = None

    # Where rollbot itself connects to reach a restored instance, when its endpoint is not
    # reachable from rollbot's network (private subnets reached through a bastion or an SSM /
    # kubectl port-forward to this host:port). Only rollbot's own connections (the verify)
    # use it: the app is always pointed at the instance's real endpoint.
    connect_host: str | None = None
    connect_port: int | None = Field(None, ge=1, le=65535)

    # How often to ask RDS whether the new instance is available, and for how long at most.
    poll_seconds: float = Field(30.0, gt=0, le=600)
    max_wait_minutes: float = Field(240.0, gt=0, le=24 * 60)

    @model_validator(mode="after")
    def _one_target(self) -> RdsConfig:
        if bool(self.instance_id) == bool(self.cluster_id):
            raise ValueError("set exactly one of instance_id (RDS) or cluster_id (Aurora)")
        if self.cluster_id and self.multi_az is not None:
            raise ValueError(
                "multi_az applies to RDS instances; an Aurora cluster's availability comes "
                "from its instances (add readers after the restore)"
            )
        return self
