"""Where snapshots live: a local folder or an S3 bucket, behind one small interface.

Keys are ``/``-separated relative names (``snapshot-20250115-103000.dir/toc.dat``).
Reads and writes are streams, so a snapshot never has to fit in memory. A write
becomes visible only once complete (a ``.part`` file renamed on close, or a
finished S3 upload), so a crash never leaves a half-written object under the
real name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol, cast
from urllib.parse import urlsplit

from bot.errors import NotFoundError, ProviderError
from bot.redact import redact

CHUNK = 1024 * 1024


class StorageError(ProviderError):
    """The backups location could not be written or read: full disk, permissions, read-only.

    Its message names the object, the place and the cause in one line, so the CLI
    and Slack show it as a clear refusal, never as an unexpected error.
    """


def os_error_cause(exc: OSError) -> str:
    """``no space left on device (errno ENOSPC)``: what a person can look up and act on."""
    name = errno.errorcode.get(exc.errno or 0)
    reason = (exc.strerror or str(exc) or type(exc).__name__).strip().rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    return f"{reason} (errno {name})" if name else reason


def errno_of(reason: str) -> int | None:
    """The errno whose C message is ``reason`` ("No space left on device"): for tools' stderr."""
    wanted = reason.strip().rstrip(".").lower()
    return next((c for c in errno.errorcode if os.strerror(c).lower() == wanted), None)


def storage_error(what: str, exc: OSError) -> StorageError:
    """The one place an OSError becomes a person's message: ``cannot {what}: {cause}``."""
    return StorageError(redact(f"cannot {what}: {os_error_cause(exc)}"))


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn an OSError inside the block into a StorageError; ``what`` names action and path,
    e.g. ``write snapshot-20261202-101500.sql.gz in /backups/prod``."""
    try:
        yield
    except OSError as exc:
        raise storage_error(what, exc) from None


class _GuardedFile:
    """A file whose read and write failures become StorageError naming the backup.

    Only the file's own I/O is mapped: an OSError of the caller's other work inside
    the same ``with`` block keeps its type and is not blamed on the storage.
    """

    def __init__(self, fh: IO[bytes], what: str) -> None:
        self._fh, self._what = fh, what

    def read(self, n: int = -1) -> bytes:
        try:
            return self._fh.read(n)
        except OSError as exc:
            raise storage_error(self._what, exc) from None

    def write(self, data: bytes) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            raise storage_error(self._what, exc) from None

    def flush(self) -> None:
        with storage_errors(self._what):
            self._fh.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime


class BackupStorage(Protocol):
    """The operations snapshots need; every backend implements exactly these."""

    location: str

    def open_write(self, key: str) -> contextlib.AbstractContextManager[IO[bytes]]: ...

    def open_read(self, key: str) -> contextlib.AbstractContextManager[IO[bytes]]: ...

    def list(self, prefix: str = "") -> list[StoredObject]: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def local_path(self, key: str) -> Path | None:
        """A filesystem path for ``key`` when the backend is local (lets tools write in place)."""
        ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ProviderError(f"invalid backup name {key!r}")
    return key


class LocalStorage:
    """Backups in a folder (the runbook's ``backups/``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def _what(self, action: str, key: str) -> str:
        return f"{action} {key} in {self.location}"

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        path = self._path(key)
        what = self._what("write", key)
        part = path.with_name(path.name + ".part")
        with storage_errors(what):
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(part, "wb")  # noqa: SIM115 - closed below, errors mapped
        try:
            yield cast(IO[bytes], _GuardedFile(fh, what))
            with storage_errors(what):
                fh.close()  # flushes: a full disk may show only here
                os.replace(part, path)
        finally:
            with contextlib.suppress(OSError):  # cleanup never hides the first failure
                fh.close()
            with contextlib.suppress(OSError):
                part.unlink()

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        path = self._path(key)
        what = self._what("read", key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise NotFoundError(f"backup {key!r} not found in {self.location}") from None
        except OSError as exc:
            raise storage_error(what, exc) from None
        with fh:
            yield cast(IO[bytes], _GuardedFile(fh, what))

    def list(self, prefix: str = "") -> list[StoredObject]:
        if not self.root.is_dir():
            return []
        out = []
        with storage_errors(f"list {self.location}"):
            for dirpath, _dirs, files in os.walk(self.root):
                for name in files:
                    if name.endswith(".part"):
                        continue
                    full = Path(dirpath) / name
                    key = full.relative_to(self.root).as_posix()
                    if not key.startswith(prefix):
                        continue
                    try:
                        st = full.stat()
                    except FileNotFoundError:
                        continue  # deleted while we listed (retention elsewhere): not there
                    modified = datetime.fromtimestamp(st.st_mtime, UTC)
                    out.append(StoredObject(key, st.st_size, modified))
        return sorted(out, key=lambda o: o.key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"backup {key!r} not found in {self.location}") from None
        except OSError as exc:
            raise storage_error(self._what("read", key), exc) from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        with storage_errors(self._what("delete", key)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            # remove now-empty parent folders (a directory-format snapshot), never the root
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent


class S3Storage:
    """Backups under ``s3://bucket/prefix`` (any S3-compatible server via ``endpoint_url``)."""

    def __init__(self, url: str, *, endpoint_url: str | None = None, client: Any = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ProviderError(f"backups location {url!r} is not s3://bucket/prefix")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.location = url
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def local_path(self, key: str) -> Path | None:
        return None

    def _fail(self, action: str, key: str, exc: Exception) -> ProviderError:
        reason = getattr(exc, "response", {}).get("Error", {}).get("Message") or str(exc)
        line = redact(reason).strip().splitlines()[0] if reason else type(exc).__name__
        return ProviderError(f"S3 {action} of {key!r} in {self.location} failed: {line}")

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        """Yield a pipe; a thread streams it to S3 (multipart for large objects).

        If the producer fails, the upload sees an error instead of end-of-file, so
        S3 aborts it and no partial object appears under ``key``.
        """
        import threading

        full = self._key(key)
        read_fd, write_fd = os.pipe()
        aborted = threading.Event()
        reader = _AbortableReader(os.fdopen(read_fd, "rb", buffering=CHUNK), aborted)
        writer = os.fdopen(write_fd, "wb", buffering=CHUNK)
        errors: list[Exception] = []

        def upload() -> None:
            try:
                from boto3.s3.transfer import TransferConfig

                # bounded buffers: at most 4 parts of 16 MiB in memory, whatever the size
                config = TransferConfig(multipart_chunksize=16 * CHUNK, max_concurrency=4)
                self.client.upload_fileobj(reader, self.bucket, full, Config=config)
            except Exception as exc:
                errors.append(exc)
                with contextlib.suppress(OSError):  # drain so the producer never blocks
                    while reader.raw.read(CHUNK):
                        pass
            finally:
                reader.raw.close()

        thread = threading.Thread(target=upload, name=f"s3-upload-{key}", daemon=True)
        thread.start()
        try:
            yield writer
        except BaseException:
            aborted.set()
            with contextlib.suppress(BrokenPipeError):
                writer.close()
            thread.join()
            raise
        with contextlib.suppress(BrokenPipeError):
            writer.close()
        thread.join()
        if errors:
            raise self._fail("upload", key, errors[0])

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFoundError(f"backup {key!r} not found in {self.location}") from None
            raise self._fail("read", key, exc) from None
        try:
            yield body
        finally:
            body.close()

    def list(self, prefix: str = "") -> list[StoredObject]:
        from botocore.exceptions import BotoCoreError, ClientError

        base = f"{self.prefix}/" if self.prefix else ""
        out = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    out.append(
                        StoredObject(item["Key"][len(base) :], item["Size"], item["LastModified"])
                    )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("listing", prefix or "*", exc) from None
        return sorted(out, key=lambda o: o.key)

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail("lookup", key, exc) from None

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise NotFoundError(f"backup {key!r} not found in {self.location}")
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            raise self._fail("delete", key, exc) from None


class _AbortableReader:
    """A pipe's read end that turns end-of-file into an error once the producer failed."""

    def __init__(self, raw: IO[bytes], aborted: Any) -> None:
        self.raw, self.aborted = raw, aborted

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if not data and self.aborted.is_set():
            raise OSError("backup write aborted by its producer")
        return data

    def readable(self) -> bool:
        return True


def open_storage(location: str | Path, *, endpoint_url: str | None = None) -> BackupStorage:
    """``s3://bucket/prefix`` gives S3Storage; anything else is a local folder."""
    text = str(location)
    if text.startswith("s3://"):
        return S3Storage(text, endpoint_url=endpoint_url)
    if "://" in text:
        raise ProviderError(f"backups location {text!r}: only a folder or s3://bucket/prefix")
    return LocalStorage(text)


def copy_stream(src: IO[bytes], dst: IO[bytes], progress: Any = None) -> int:
    """Copy in 1 MiB chunks; ``progress(n)`` gets the bytes copied so far."""
    total = 0
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        total += len(chunk)
        if progress:
            progress(total)
    return total


def download_tree(storage: BackupStorage, prefix: str, dest: Path) -> None:
    """Copy every object under ``prefix/`` into ``dest`` (for tools that need a local directory)."""
    for obj in storage.list(prefix.rstrip("/") + "/"):
        rel = obj.key[len(prefix.rstrip("/")) + 1 :]
        target = dest / rel
        # read errors of the source are mapped by the storage; these are the local copy's
        with storage_errors(f"download {obj.key} from {storage.location} to {target.parent}"):
            target.parent.mkdir(parents=True, exist_ok=True)
            with storage.open_read(obj.key) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
