"""manifest.yml validates against Slack's published manifest schema, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.exceptions import NoSuchResource

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT.parent / "shared" / "specs" / "slack-manifest.schema.1.0.0.json"


def _offline(uri: str) -> None:
    raise NoSuchResource(ref=uri)  # never fetch a remote $ref


def _validator() -> Draft7Validator:
    if not SCHEMA.exists():
        pytest.skip(f"Slack's manifest schema is not beside the clone ({SCHEMA})")
    schema = json.loads(SCHEMA.read_text())
    return Draft7Validator(schema, registry=Registry(retrieve=_offline))


def test_manifest_validates_against_slacks_schema() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    errors = sorted(_validator().iter_errors(manifest), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_manifest_matches_what_the_app_listens_for() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert commands == ["/rollback"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert "app_mention" in manifest["settings"]["event_subscriptions"]["bot_events"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "usergroups:read", "app_mentions:read"} <= scopes


def test_the_validator_catches_a_broken_manifest() -> None:
    broken = {
        "display_information": {"name": ""},
        "features": {"slash_commands": [{"command": "rollback"}]},
    }
    assert len(list(_validator().iter_errors(broken))) >= 2
