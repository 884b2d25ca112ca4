"""A backups folder that cannot be written or read: one line naming the path and the cause.

Unwritable folder, full disk, a folder that cannot be created, a read-only filesystem:
``rollbot snapshot`` and restores say ``cannot write <what> in <where>: <cause> (errno
NAME); nothing was kept`` (exit code 2, no traceback) and leave no partial snapshot,
staging folder or ``_restoring_`` database behind.

The tests run as root, which ignores permission bits, so: a full disk is ``/dev/full``
(every write raises ENOSPC), an unwritable folder is ``chattr +i`` (or chmod when not
root), a folder that cannot be created is one whose parent is a regular file, and
pg_dump failing on a full disk is a stand-in pg_dump printing pg_dump's own message.
"""

from __future__ import annotations

import builtins
import dataclasses
import errno
import io
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rich.console import Console

import providers.postgres.snapshot as snapshot_module
import providers.storage as storage_module
from bot.errors import RollbotError
from handlers.cli import main
from handlers.progress import TransferProgress
from providers.postgres.cluster import ThrowawayCluster
from providers.postgres.restore import restore_snapshot
from providers.postgres.snapshot import create_snapshot
from providers.storage import LocalStorage, StorageError, os_error_cause, storage_errors
from tests.conftest import named_after

postgres = pytest.mark.postgres

NAME = r"snapshot-\d{8}-\d{6}(?:-\d+)?"
SUFFIX = {"directory": ".dir", "sql.gz": ".sql.gz", "sql.zst": ".sql.zst"}
ENOSPC_TEXT = "no space left on device (errno ENOSPC)"
ENOSPC = re.escape(ENOSPC_TEXT)
UNWRITABLE = r"(?:operation not permitted \(errno EPERM\)|permission denied \(errno EACCES\))"
real_open = builtins.open


# --------------------------------------------------------------------------- helpers


def files_in(folder: Path) -> list[str]:
    """Everything under ``folder`` (hidden staging folders and ``.part`` files included)."""
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def full_disk_for(monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """Backups whose name ends in ``suffix`` are written onto /dev/full: ENOSPC, a full disk.

    The storage's ``.part`` file becomes a symlink to /dev/full just before it is opened,
    so the cleanup that follows the failure is the real one.
    """

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        path = Path(file)
        if "w" in mode and path.name.endswith(suffix + ".part"):
            path.symlink_to("/dev/full")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(storage_module, "open", fake_open, raising=False)


def unreadable(monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """Reading a backup whose name ends in ``suffix`` fails as a chmod 000 file does."""

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" not in mode and str(file).endswith(suffix):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(storage_module, "open", fake_open, raising=False)


@pytest.fixture
def make_unwritable() -> Iterator[Callable[[Path], None]]:
    """Make a folder unwritable even for root (``chattr +i``; chmod for anyone else)."""
    undo: list[list[str]] = []

    def freeze(folder: Path) -> None:
        if os.geteuid() != 0:
            folder.chmod(0o555)
            undo.append(["chmod", "755", str(folder)])
        elif shutil.which("chattr") and _run(["chattr", "+i", str(folder)]):
            undo.append(["chattr", "-i", str(folder)])
        else:
            pytest.skip("root without chattr +i: no way to make a folder unwritable here")
        try:
            (folder / ".probe").touch()
        except OSError:
            return
        (folder / ".probe").unlink()
        pytest.skip(f"{folder} stays writable (filesystem ignores chattr +i)")

    yield freeze
    for argv in undo:
        _run(argv)


def _run(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


@pytest.fixture
def app_url(pg_url: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items (id serial PRIMARY KEY, body text);"
            "INSERT INTO items (body) SELECT repeat(md5(i::text), 8) "
            "FROM generate_series(1, 3000) i;"
        )
    return pg_url


def item_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM items").fetchone()
    assert row is not None
    return int(row[0])


def leftover_databases(cluster: ThrowawayCluster, url: str) -> list[str]:
    """``_restoring_`` (a load not cleaned up) or ``_before_restore_`` (a swap that happened)."""
    return named_after(cluster, url.rsplit("/", 1)[1])


def snapshot_cli(
    tmp_path: Path,
    backups: Path,
    url: str,
    fmt: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str]:
    """``rollbot snapshot --env dev --format FMT``; its exit code and its stderr."""
    config = tmp_path / "rollbot.toml"
    config.write_text(
        f'[environments.dev]\ntier = "development"\ndatabase_url_env = "ROLLBOT_TEST_DB_URL"\n'
        f'backups = "{backups}"\n'
    )
    monkeypatch.setenv("ROLLBOT_TEST_DB_URL", url)
    monkeypatch.delenv("ROLLBOT_DEBUG", raising=False)
    capsys.readouterr()
    args = ["--config", str(config), "snapshot", "--env", "dev", "--format", fmt, "--no-progress"]
    code = main(args)
    return code, capsys.readouterr().err


def assert_one_line(err: str, pattern: str) -> None:
    """Exactly one line on stderr, matching ``pattern`` whole; no traceback."""
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert re.fullmatch(pattern, err.rstrip("\n")), err


# --------------------------------------------------------------------------- the one place


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.ENOSPC, "no space left on device (errno ENOSPC)"),
        (errno.EACCES, "permission denied (errno EACCES)"),
        (errno.EPERM, "operation not permitted (errno EPERM)"),
        (errno.EROFS, "read-only file system (errno EROFS)"),
        (errno.ENOENT, "no such file or directory (errno ENOENT)"),
        (errno.ENOTDIR, "not a directory (errno ENOTDIR)"),
        (errno.EDQUOT, "disk quota exceeded (errno EDQUOT)"),
    ],
)
def test_os_errors_become_one_line_with_errno_name(code: int, cause: str) -> None:
    assert os_error_cause(OSError(code, os.strerror(code))) == cause
    with pytest.raises(StorageError) as err, storage_errors("write x.sql.gz in /backups/prod"):
        raise OSError(code, os.strerror(code), "/backups/prod/x.sql.gz.part")
    assert str(err.value) == f"cannot write x.sql.gz in /backups/prod: {cause}"
    assert isinstance(err.value, RollbotError) and err.value.exit_code == 2


def test_full_disk_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path / "backups")
    full_disk_for(monkeypatch, ".sql.gz")
    with pytest.raises(StorageError) as err, storage.open_write("a.sql.gz") as fh:
        fh.write(b"x" * 3 * storage_module.CHUNK)
    assert str(err.value) == f"cannot write a.sql.gz in {storage.root}: {ENOSPC_TEXT}"
    assert files_in(storage.root) == []


def test_full_disk_showing_only_when_the_file_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small write sits in the buffer: the full disk shows when it is flushed on close."""
    storage = LocalStorage(tmp_path / "backups")
    full_disk_for(monkeypatch, ".manifest.json")
    with pytest.raises(StorageError, match=ENOSPC), storage.open_write("m.manifest.json") as fh:
        fh.write(b"{}")
    assert files_in(storage.root) == []


def test_read_only_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path / "backups")

    def read_only(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))

    monkeypatch.setattr(storage_module, "open", read_only, raising=False)
    with pytest.raises(StorageError) as err, storage.open_write("a.sql.zst"):
        pass
    assert str(err.value) == (
        f"cannot write a.sql.zst in {storage.root}: read-only file system (errno EROFS)"
    )


def test_folder_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    storage = LocalStorage(tmp_path / "a-file" / "backups")
    with pytest.raises(StorageError) as err, storage.open_write("a.sql.gz"):
        pass
    assert (
        str(err.value)
        == f"cannot write a.sql.gz in {storage.root}: not a directory (errno ENOTDIR)"
    )
    with pytest.raises(StorageError, match=r"cannot delete a\.sql\.gz"):
        storage.delete("a.sql.gz")  # a cleanup's failure is a ProviderError too, never raw


def test_unreadable_backup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path / "backups")
    with storage.open_write("a.sql.gz") as fh:
        fh.write(b"data")
    unreadable(monkeypatch, "a.sql.gz")
    with pytest.raises(StorageError) as err, storage.open_read("a.sql.gz"):
        pass
    assert str(err.value) == (
        f"cannot read a.sql.gz in {storage.root}: permission denied (errno EACCES)"
    )


def test_callers_own_os_error_is_not_blamed_on_the_storage(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "backups")
    with pytest.raises(ConnectionResetError), storage.open_write("a.sql.gz") as fh:
        fh.write(b"partial")
        raise ConnectionResetError("the producer's own failure")
    assert files_in(storage.root) == []


def test_progress_display_is_ended_before_the_error() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100)
    bar = TransferProgress(stream, None, "snapshot", console=console)
    bar(1024)
    bar.abandon()
    text = stream.getvalue()
    assert "snapshot" in text and "1.0 KB" in text
    assert "\n" in text.rsplit("1.0 KB", 1)[1]  # the bar's line is ended


# --------------------------------------------------------------------------- rollbot snapshot


@postgres
@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_snapshot_into_folder_that_cannot_be_created(
    app_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, fmt: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    backups = tmp_path / "a-file" / "backups"
    code, err = snapshot_cli(tmp_path, backups, app_url, fmt, monkeypatch, capsys)
    assert code == 2
    assert_one_line(
        err,
        rf"rollbot: cannot write {NAME}{re.escape(SUFFIX[fmt])} in {re.escape(str(backups))}: "
        r"not a directory \(errno ENOTDIR\); nothing was kept",
    )
    assert (tmp_path / "a-file").read_text() == "not a folder"


@postgres
@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_snapshot_into_unwritable_folder(
    app_url: str, tmp_path: Path, monkeypatch, capsys, make_unwritable, fmt: str
) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    make_unwritable(backups)
    code, err = snapshot_cli(tmp_path, backups, app_url, fmt, monkeypatch, capsys)
    assert code == 2
    assert_one_line(
        err,
        rf"rollbot: cannot write {NAME}{re.escape(SUFFIX[fmt])} in {re.escape(str(backups))}: "
        rf"{UNWRITABLE}; nothing was kept",
    )
    assert files_in(backups) == []


@postgres
@pytest.mark.parametrize(
    ("fmt", "full"),
    [
        ("sql.gz", ".sql.gz"),  # the dump itself
        ("sql.zst", ".sql.zst"),
        ("directory", ".roles.sql"),  # the roles file written beside it
        ("sql.gz", ".roles.sql"),
        ("directory", ".manifest.json"),  # the manifest, last
        ("sql.zst", ".manifest.json"),
    ],
)
def test_snapshot_into_full_disk(
    app_url: str, tmp_path: Path, monkeypatch, capsys, fmt: str, full: str
) -> None:
    backups = tmp_path / "backups"
    full_disk_for(monkeypatch, full)
    code, err = snapshot_cli(tmp_path, backups, app_url, fmt, monkeypatch, capsys)
    assert code == 2
    assert_one_line(
        err,
        rf"rollbot: cannot write {NAME}{re.escape(full)} in {re.escape(str(backups))}: "
        rf"{ENOSPC}; nothing was kept",
    )
    assert files_in(backups) == []


FAKE_PG_DUMP = """#!/bin/sh
# pg_dump -Fd into a full disk: it starts the folder, then fails with its own messages
while [ $# -gt 0 ]; do [ "$1" = "-f" ] && out="$2"; shift; done
mkdir -p "$out" && printf 'partial' > "$out/toc.dat"
echo 'pg_dump: error: a worker process died unexpectedly' >&2
echo "pg_dump: error: could not write to file \\"$out/3456.dat.gz\\": No space left on device" >&2
exit 1
"""


@postgres
def test_pg_dump_directory_into_full_disk(
    app_url: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    fake = tmp_path / "pg_dump"
    fake.write_text(FAKE_PG_DUMP)
    fake.chmod(0o755)
    real_find = snapshot_module.find_client_tools
    monkeypatch.setattr(
        snapshot_module,
        "find_client_tools",
        lambda major, **kw: dataclasses.replace(real_find(major, **kw), pg_dump=fake),
    )
    backups = tmp_path / "backups"
    code, err = snapshot_cli(tmp_path, backups, app_url, "directory", monkeypatch, capsys)
    assert code == 2
    assert_one_line(
        err,
        rf"rollbot: cannot write {NAME}\.dir/3456\.dat\.gz in {re.escape(str(backups))}: "
        rf"{ENOSPC}; nothing was kept",
    )
    assert files_in(backups) == []  # the staging folder pg_dump started went too


# --------------------------------------------------------------------------- restore


def assert_refused(exc: StorageError, pattern: str) -> None:
    """What the CLI and Slack show: one line, exit code 2."""
    assert exc.exit_code == 2
    assert_one_line(f"rollbot: {exc}\n", pattern)


@postgres
@pytest.mark.parametrize("mode", ["swap", "in_place"])
def test_restore_whose_safety_snapshot_meets_a_full_disk(
    app_url: str, tmp_path: Path, monkeypatch, pg_cluster, mode: str
) -> None:
    storage = LocalStorage(tmp_path / "backups")
    snap = create_snapshot(app_url, storage)
    before = files_in(storage.root)
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("DELETE FROM items WHERE id > 1000")
    full_disk_for(monkeypatch, ".manifest.json")
    with pytest.raises(StorageError) as err:
        restore_snapshot(app_url, storage, snap.name, mode=mode)  # type: ignore[arg-type]
    db = app_url.rsplit("/", 1)[1]
    assert_refused(
        err.value,
        rf"rollbot: safety snapshot: cannot write {NAME}\.manifest\.json in "
        rf"{re.escape(str(storage.root))}: {ENOSPC}; nothing was kept; {db} was not changed",
    )
    assert files_in(storage.root) == before
    assert leftover_databases(pg_cluster, app_url) == []
    assert item_count(app_url) == 1000


@postgres
def test_restore_into_unwritable_folder(
    app_url: str, tmp_path: Path, pg_cluster, make_unwritable
) -> None:
    storage = LocalStorage(tmp_path / "backups")
    snap = create_snapshot(app_url, storage, format="sql.gz")
    before = files_in(storage.root)
    make_unwritable(storage.root)
    with pytest.raises(StorageError) as err:
        restore_snapshot(app_url, storage, snap.name)
    db = app_url.rsplit("/", 1)[1]
    assert_refused(
        err.value,
        rf"rollbot: safety snapshot: cannot write {NAME}\.dir in "
        rf"{re.escape(str(storage.root))}: {UNWRITABLE}; nothing was kept; {db} was not changed",
    )
    assert files_in(storage.root) == before
    assert leftover_databases(pg_cluster, app_url) == []


@postgres
@pytest.mark.parametrize(("fmt", "blocked"), [("directory", ".dir/toc.dat"), ("sql.gz", ".sql.gz")])
def test_restore_of_unreadable_snapshot(
    app_url: str, tmp_path: Path, monkeypatch, pg_cluster, fmt: str, blocked: str
) -> None:
    storage = LocalStorage(tmp_path / "backups")
    snap = create_snapshot(app_url, storage, format=fmt)
    before = files_in(storage.root)
    unreadable(monkeypatch, blocked)
    with pytest.raises(StorageError) as err:
        restore_snapshot(app_url, storage, snap.name)
    assert_refused(
        err.value,
        rf"rollbot: cannot read {snap.name}{re.escape(blocked)} in "
        rf"{re.escape(str(storage.root))}: permission denied \(errno EACCES\)",
    )
    assert files_in(storage.root) == before  # refused before any safety snapshot
    assert leftover_databases(pg_cluster, app_url) == []
