"""The RDS API calls a point-in-time restore needs, through boto3, each failure one line.

Credentials come from boto3's standard chain (never rollbot's config); the resolved secret
key and session token are registered with the redactor so no message can carry them.
Retries are botocore's ``standard`` mode (throttling, transient 5xx, with backoff).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config

from bot.errors import ProviderError, RollbotError
from bot.redact import redact, register_secret
from providers.rds.config import RdsConfig

T = TypeVar("T")

# What a person does about each refusal RDS gives, by error code.
ADVICE = {
    "DBInstanceNotFound": "check [environments.NAME.rds] instance_id and region",
    "DBInstanceNotFoundFault": "check [environments.NAME.rds] instance_id and region",
    "DBClusterNotFoundFault": "check [environments.NAME.rds] cluster_id and region",
    "DBInstanceAlreadyExists": "an instance of that name exists: plan again for a new name",
    "DBClusterAlreadyExistsFault": "a cluster of that name exists: plan again for a new name",
    "InvalidParameterCombination": "the restore's settings do not fit together; check the "
    "overrides in [environments.NAME.rds]",
    "InvalidParameterValue": "check the overrides in [environments.NAME.rds]",
    "InvalidRestoreFault": "choose a time inside the restore window",
    "PointInTimeRestoreNotEnabled": "enable automated backups on the source",
    "PointInTimeRestoreNotEnabledFault": "enable automated backups on the source",
    "AccessDenied": "the AWS identity rollbot runs as needs rds:Describe*, "
    "rds:RestoreDBInstanceToPointInTime, rds:RestoreDBClusterToPointInTime, "
    "rds:CreateDBInstance, rds:AddTagsToResource",
    "AccessDeniedException": "the AWS identity rollbot runs as lacks an RDS permission",
    "InvalidClientTokenId": "the AWS access key is not valid: check the credentials rollbot uses",
    "SignatureDoesNotMatch": "the AWS secret key does not match: check the credentials",
    "ExpiredToken": "the AWS session expired: renew the credentials rollbot uses",
    "StorageQuotaExceeded": "raise the account's RDS storage quota or delete unused instances",
    "InstanceQuotaExceeded": "raise the account's RDS instance quota or delete unused instances",
    "DBSubnetGroupNotFoundFault": "check subnet_group in [environments.NAME.rds]",
    "DBParameterGroupNotFound": "check parameter_group in [environments.NAME.rds]",
}


class RdsError(ProviderError):
    """RDS refused or could not be reached; ``code`` is RDS's error code, if it gave one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(redact(message))
        self.code = code


def _error(action: str, exc: Exception) -> RdsError:
    """One line a person can act on, for any boto3 failure."""
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return RdsError(
            f"RDS {action}: no AWS credentials found; give rollbot some through the standard "
            "chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO, or an "
            "instance/task role)",
            "NoCredentials",
        )
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "Unknown")
        message = str(err.get("Message") or "").strip().rstrip(".")
        advice = ADVICE.get(code)
        tail = f": {advice}" if advice else ""
        return RdsError(f"RDS refused {action}: {message or code} ({code}){tail}", code)
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return RdsError(f"RDS API unreachable for {action}: {exc}", "Unreachable")
    return RdsError(f"RDS {action} failed: {exc}", type(exc).__name__)


class RdsClient:
    """One region's RDS API (optionally at another endpoint)."""

    def __init__(self, cfg: RdsConfig, client: Any | None = None) -> None:
        self.cfg = cfg
        self._client = client or _boto_client(cfg)

    def call(self, action: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """``fn(**kwargs)`` with every boto3 failure turned into one :class:`RdsError`."""
        try:
            return fn(**kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise _error(action, exc) from None

    # ---------------------------------------------------------------- reads
    def instance(self, instance_id: str) -> dict[str, Any]:
        out = self.call(
            f"describing instance {instance_id}",
            self._client.describe_db_instances,
            DBInstanceIdentifier=instance_id,
        )
        return out["DBInstances"][0]

    def instance_or_none(self, instance_id: str) -> dict[str, Any] | None:
        try:
            return self.instance(instance_id)
        except RdsError as exc:
            if exc.code in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
                return None
            raise

    def automated_backups(self, instance_id: str) -> list[dict[str, Any]]:
        out = self.call(
            f"listing the automated backups of {instance_id}",
            self._client.describe_db_instance_automated_backups,
            DBInstanceIdentifier=instance_id,
        )
        return list(out.get("DBInstanceAutomatedBackups") or [])

    def cluster(self, cluster_id: str) -> dict[str, Any]:
        out = self.call(
            f"describing cluster {cluster_id}",
            self._client.describe_db_clusters,
            DBClusterIdentifier=cluster_id,
        )
        return out["DBClusters"][0]

    def cluster_or_none(self, cluster_id: str) -> dict[str, Any] | None:
        try:
            return self.cluster(cluster_id)
        except RdsError as exc:
            if exc.code in ("DBClusterNotFoundFault", "DBClusterNotFound"):
                return None
            raise

    # ------------------------------------------------------------- mutations
    def restore_instance(self, **kwargs: Any) -> dict[str, Any]:
        check_exclusive(kwargs, "RestoreTime")
        out = self.call(
            f"restoring {kwargs.get('SourceDBInstanceIdentifier')} to a point in time",
            self._client.restore_db_instance_to_point_in_time,
            **kwargs,
        )
        return out["DBInstance"]

    def restore_cluster(self, **kwargs: Any) -> dict[str, Any]:
        check_exclusive(kwargs, "RestoreToTime")
        out = self.call(
            f"restoring cluster {kwargs.get('SourceDBClusterIdentifier')} to a point in time",
            self._client.restore_db_cluster_to_point_in_time,
            **kwargs,
        )
        return out["DBCluster"]

    def create_instance(self, **kwargs: Any) -> dict[str, Any]:
        out = self.call(
            f"creating instance {kwargs.get('DBInstanceIdentifier')}",
            self._client.create_db_instance,
            **kwargs,
        )
        return out["DBInstance"]

    def delete_instance(self, instance_id: str) -> None:
        self.call(
            f"deleting instance {instance_id}",
            self._client.delete_db_instance,
            DBInstanceIdentifier=instance_id,
            SkipFinalSnapshot=True,
            DeleteAutomatedBackups=True,
        )

    def close(self) -> None:
        self._client.close()

    def delete_cluster(self, cluster_id: str) -> None:
        self.call(
            f"deleting cluster {cluster_id}",
            self._client.delete_db_cluster,
            DBClusterIdentifier=cluster_id,
            SkipFinalSnapshot=True,
        )


def refuse_existing(client: RdsClient, identifier: str, *, cluster: bool = False) -> None:
    """rollbot never restores over (or into) something that exists: a name collision is
    refused when the plan is made and again before sending."""
    found = client.cluster_or_none(identifier) if cluster else client.instance_or_none(identifier)
    if found is not None:
        what = "an Aurora cluster" if cluster else "an RDS instance"
        raise RollbotError(
            f"{what} named {identifier} already exists: rollbot never restores over it; plan "
            "again (the new name carries the time) or delete that one"
        )


def check_exclusive(kwargs: dict[str, Any], time_key: str) -> None:
    """A restore names a time *or* asks for the latest restorable time, never both (AWS
    refuses both; moto and older tooling accept it, so rollbot refuses it itself)."""
    has_time = kwargs.get(time_key) is not None
    latest = bool(kwargs.get("UseLatestRestorableTime"))
    if has_time and latest:
        raise RdsError(
            f"a restore takes either {time_key} or UseLatestRestorableTime, not both: "
            "choose a restore time, or the latest restorable time"
        )
    if not has_time and not latest:
        raise RdsError(f"a restore needs {time_key} or UseLatestRestorableTime")


def _boto_client(cfg: RdsConfig) -> Any:
    session = boto3.session.Session()
    _register_credentials(session)
    return session.client(
        "rds",
        region_name=cfg.region,
        endpoint_url=cfg.endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10),
    )


def _register_credentials(session: boto3.session.Session) -> None:
    """The resolved secret key and token become redaction secrets, wherever they came from."""
    try:
        creds = session.get_credentials()
    except botocore.exceptions.BotoCoreError:
        return  # a broken profile: the first call reports it
    if creds is not None:
        frozen = creds.get_frozen_credentials()
        register_secret(frozen.secret_key)
        register_secret(frozen.token)


@contextmanager
def rds_client(cfg: RdsConfig) -> Iterator[RdsClient]:
    """An :class:`RdsClient`, closed afterwards."""
    client = RdsClient(cfg)
    try:
        yield client
    finally:
        client.close()
