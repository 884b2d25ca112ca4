"""What the restored copy gets: each setting copied from the source, or set by the config.

A point-in-time restore does not carry everything over by itself (security groups and the
parameter group fall back to the defaults), so rollbot passes each one explicitly and the
plan says, setting by setting, where its value came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.rds.access import TAG_INCIDENT, TAG_SOURCE
from providers.rds.config import RdsConfig


@dataclass(frozen=True)
class Setting:
    label: str  # for people: "instance class"
    api_key: str  # the restore call's parameter
    value: Any
    overridden: bool  # True when [environments.NAME.rds] set it

    def line(self, source_id: str, env_name: str) -> str:
        shown = _shown(self.value)
        origin = (
            f"set by [environments.{env_name}.rds]"
            if self.overridden
            else f"copied from {source_id}"
        )
        return f"{self.label}: {shown} ({origin})"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        if value and isinstance(value[0], dict):
            return ", ".join(f"{t['Key']}={t['Value']}" for t in value) or "none"
        return ", ".join(map(str, value)) or "none"
    return str(value) if value not in (None, "") else "none"


def _pick(label: str, key: str, override: Any, copied: Any) -> Setting | None:
    if override is not None:
        return Setting(
            label, key, list(override) if isinstance(override, tuple) else override, True
        )
    if copied in (None, "", []):
        return None  # nothing to copy: RDS's default applies, and the plan need not list it
    return Setting(label, key, copied, False)


def _tags(cfg: RdsConfig, copied: list[dict[str, str]]) -> Setting:
    if cfg.tags is not None:
        return Setting("tags", "Tags", [{"Key": k, "Value": v} for k, v in cfg.tags.items()], True)
    return Setting(
        "tags", "Tags", [t for t in copied if not t["Key"].startswith("rollbot:")], False
    )


def instance_settings(cfg: RdsConfig, source: dict[str, Any]) -> list[Setting]:
    """The restored instance's settings, from the source instance and the overrides."""
    groups = source.get("DBParameterGroups") or [{}]
    picked = [
        _pick(
            "instance class", "DBInstanceClass", cfg.instance_class, source.get("DBInstanceClass")
        ),
        _pick(
            "subnet group",
            "DBSubnetGroupName",
            cfg.subnet_group,
            (source.get("DBSubnetGroup") or {}).get("DBSubnetGroupName"),
        ),
        _pick(
            "VPC security groups",
            "VpcSecurityGroupIds",
            cfg.security_group_ids,
            [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups") or []],
        ),
        _pick(
            "parameter group",
            "DBParameterGroupName",
            cfg.parameter_group,
            groups[0].get("DBParameterGroupName"),
        ),
        _pick("Multi-AZ", "MultiAZ", cfg.multi_az, bool(source.get("MultiAZ"))),
        _tags(cfg, list(source.get("TagList") or [])),
    ]
    return [s for s in picked if s is not None]


def cluster_settings(cfg: RdsConfig, source: dict[str, Any]) -> list[Setting]:
    """The restored Aurora cluster's settings, from the source cluster and the overrides."""
    picked = [
        _pick("subnet group", "DBSubnetGroupName", cfg.subnet_group, source.get("DBSubnetGroup")),
        _pick(
            "VPC security groups",
            "VpcSecurityGroupIds",
            cfg.security_group_ids,
            [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups") or []],
        ),
        _pick(
            "cluster parameter group",
            "DBClusterParameterGroupName",
            cfg.parameter_group,
            source.get("DBClusterParameterGroup"),
        ),
        _tags(cfg, list(source.get("TagList") or [])),
    ]
    return [s for s in picked if s is not None]


def as_params(settings: list[Setting], source_id: str, incident_ref: str) -> dict[str, Any]:
    """The restore call's parameters; rollbot's own tags say whose copy it is."""
    params = {s.api_key: s.value for s in settings}
    ours = [{"Key": TAG_INCIDENT, "Value": incident_ref}, {"Key": TAG_SOURCE, "Value": source_id}]
    params["Tags"] = [*params.get("Tags", []), *ours]
    return params


def pinned(settings: list[Setting]) -> list[dict[str, Any]]:
    """Settings as the step's params keep them (JSON)."""
    return [
        {"label": s.label, "api_key": s.api_key, "value": s.value, "overridden": s.overridden}
        for s in settings
    ]


def unpinned(rows: list[dict[str, Any]]) -> list[Setting]:
    return [Setting(r["label"], r["api_key"], r["value"], bool(r["overridden"])) for r in rows]
