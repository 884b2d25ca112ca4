"""Backup storage: local folder and S3 (against a real moto_server subprocess)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import psycopg
import pytest

from bot.errors import NotFoundError, ProviderError
from providers.postgres.checksums import table_checksums
from providers.postgres.cluster import free_port
from providers.postgres.restore import restore_snapshot
from providers.postgres.snapshot import create_snapshot, list_snapshots, verify_snapshot
from providers.storage import LocalStorage, S3Storage, open_storage
from tests.waiting import wait_until

BIG = os.urandom(3 * 1024 * 1024 + 17)  # several chunks, not a multiple of the chunk size


def _answers(proc: subprocess.Popen[bytes], url: str) -> bool:
    """Whether the server answers ``url`` yet; a server that exited fails at once."""
    assert proc.poll() is None, f"moto_server exited with {proc.returncode}"
    try:
        httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(proc, url + "/moto-api/"), "moto_server to answer")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch) -> S3Storage:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"backups-{free_port()}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    storage = open_storage(f"s3://{bucket}/team/prod", endpoint_url=moto_endpoint)
    assert isinstance(storage, S3Storage)
    return storage


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "backups")


@pytest.fixture(params=["local", "s3"])
def any_storage(request):
    return request.getfixturevalue(request.param)


def test_write_read_list_size_delete(any_storage):
    with any_storage.open_write("snapshot-x.dir/toc.dat") as fh:
        for i in range(0, len(BIG), 100_000):
            fh.write(BIG[i : i + 100_000])
    with any_storage.open_write("a.json") as fh:
        fh.write(b"{}")
    assert any_storage.size("snapshot-x.dir/toc.dat") == len(BIG)
    with any_storage.open_read("snapshot-x.dir/toc.dat") as fh:
        out = io.BytesIO()
        while chunk := fh.read(65536):
            out.write(chunk)
    assert out.getvalue() == BIG
    assert [o.key for o in any_storage.list()] == ["a.json", "snapshot-x.dir/toc.dat"]
    assert [o.key for o in any_storage.list("snap")] == ["snapshot-x.dir/toc.dat"]
    assert any_storage.exists("a.json") and not any_storage.exists("b.json")
    any_storage.delete("snapshot-x.dir/toc.dat")
    assert [o.key for o in any_storage.list()] == ["a.json"]
    with pytest.raises(NotFoundError, match="not found"):
        any_storage.size("nope")
    with pytest.raises(NotFoundError, match="not found"), any_storage.open_read("nope"):
        pass


def test_failed_write_leaves_nothing(any_storage):
    with pytest.raises(RuntimeError), any_storage.open_write("half.sql.gz") as fh:
        fh.write(b"partial")
        raise RuntimeError("producer died")
    assert not any_storage.exists("half.sql.gz")
    assert any_storage.list() == []


def test_bad_keys_and_locations(local):
    for key in ("../escape", "/abs", "a//b", ""):
        with pytest.raises(ProviderError, match="invalid backup name"):
            local.exists(key)
    with pytest.raises(ProviderError, match="only a folder or s3"):
        open_storage("ftp://host/x")
    with pytest.raises(ProviderError, match="s3://bucket"):
        S3Storage("s3:///nobucket", client=object())


def test_missing_bucket_is_a_clear_error(moto_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    storage = open_storage("s3://no-such-bucket-here/x", endpoint_url=moto_endpoint)
    with pytest.raises(ProviderError, match="S3 listing"):
        storage.list()
    with pytest.raises(ProviderError, match="S3 upload"), storage.open_write("k") as fh:
        fh.write(b"data")


@pytest.mark.postgres
@pytest.mark.parametrize("fmt", ["directory", "sql.gz"])
def test_s3_snapshot_round_trip(pg_url, s3, fmt):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE t (id serial PRIMARY KEY, v text);"
            "INSERT INTO t (v) SELECT md5(i::text) FROM generate_series(1, 5000) i;"
        )
        before = table_checksums(conn)
    snap = create_snapshot(pg_url, s3, format=fmt)
    assert [s.name for s in list_snapshots(s3)] == [snap.name]
    assert s3.exists(snap.manifest_key)
    verify_snapshot(s3, snap.name)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("TRUNCATE t")
    result = restore_snapshot(pg_url, s3, snap.name)
    with psycopg.connect(pg_url) as conn:
        assert table_checksums(conn) == before
    verify_snapshot(s3, result.safety_snapshot)
    # tampering with an object in the bucket is caught
    key = max(
        (o for o in s3.list(snap.name) if not o.key.endswith(".json")), key=lambda o: o.size
    ).key
    s3.client.put_object(Bucket=s3.bucket, Key=f"{s3.prefix}/{key}", Body=b"tampered")
    with pytest.raises(ProviderError, match=r"manifest says|checksum"):
        verify_snapshot(s3, snap.name)
