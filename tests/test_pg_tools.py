"""Client tools of the server's major version; the password never on a command line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bot.errors import ProviderError
from providers.postgres import tools as tools_mod
from providers.postgres.tools import child_env, find_client_tools, split_password


def fake_tool(folder: Path, name: str, major: int) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) {major}.3 (fake)'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_finds_tools_of_installed_server_major(pg_cluster):
    major = pg_cluster.major_version
    found = find_client_tools(major)
    assert found.major == major
    for path in (found.pg_dump, found.pg_restore, found.psql, found.pg_dumpall):
        assert tools_mod.tool_major_version(path) == major


def test_wrong_major_on_path_is_refused_with_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(tools_mod, "DEBIAN_ROOT", tmp_path / "none")
    for name in ("pg_dump", "pg_restore", "psql", "pg_dumpall"):
        fake_tool(tmp_path, name, 13)
    with pytest.raises(ProviderError) as err:
        find_client_tools(16, search_path=str(tmp_path))
    msg = str(err.value)
    assert "PostgreSQL 16 client tools" in msg
    assert "found version 13" in msg
    assert "apt-get install -y postgresql-client-16" in msg


def test_missing_tools_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(tools_mod, "DEBIAN_ROOT", tmp_path / "none")
    fake_tool(tmp_path, "psql", 17)
    with pytest.raises(ProviderError, match=r"pg_dump \(not found\)") as err:
        find_client_tools(17, search_path=str(tmp_path))
    assert "pg_restore (not found)" in str(err.value)
    assert "psql" not in str(err.value).split(":")[1]  # psql 17 was found


def test_matching_tool_on_path_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr(tools_mod, "DEBIAN_ROOT", tmp_path / "none")
    for name in ("pg_dump", "pg_restore", "psql", "pg_dumpall"):
        fake_tool(tmp_path, name, 18)
    found = find_client_tools(18, search_path=str(tmp_path))
    assert found.pg_dump == tmp_path / "pg_dump"


def test_password_goes_to_env_not_url():
    url = "postgresql://app:s%40cret%2Fpw@db.example.com:5433/shop?sslmode=require"
    safe, env = child_env(url)
    assert safe == "postgresql://app@db.example.com:5433/shop?sslmode=require"
    assert env["PGPASSWORD"] == "s@cret/pw"
    assert "cret" not in safe
    assert split_password("postgresql://app@h/db") == ("postgresql://app@h/db", None)


def test_url_password_wins_over_inherited_pgpassword(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "operator-secret")
    _, env = child_env("postgresql://app:url-secret@localhost/db")
    assert env["PGPASSWORD"] == "url-secret"
    _, env = child_env("postgresql://app@localhost/db")  # no password in the URL: keep theirs
    assert env["PGPASSWORD"] == "operator-secret"
    assert os.environ["PGPASSWORD"] == "operator-secret"
