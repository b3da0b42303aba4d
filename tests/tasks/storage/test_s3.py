"""S3 against a real SeaweedFS: round trips and the failures a user meets."""

import hashlib
import os
import threading
from pathlib import Path

import pytest

from tasks.publishing import _upload_verified
from tasks.storage import s3 as s3io
from tasks.storage.seaweed import SeaweedServer, free_port
from tests.conftest import ACCESS, SECRET


def settings(endpoint: str, bucket: str = "b", retry_budget_s: float = 30.0) -> s3io.S3Settings:
    return s3io.S3Settings(
        endpoint_url=endpoint,
        region="us-east-1",
        zoo_bucket=bucket,
        publish_bucket=bucket,
        retry_budget_s=retry_budget_s,
    )


def test_round_trip_and_missing_key(s3_server, tmp_path: Path):
    st = settings(s3_server.endpoint_url, "roundtrip")
    client = s3io.client(st)
    s3io.ensure_buckets(client, st, ["roundtrip"])
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 100_000)
    s3io.upload_file(client, st, src, "roundtrip", "k/a.bin")
    s3io.download_file(client, st, "roundtrip", "k/a.bin", tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == src.read_bytes()
    assert s3io.get_bytes(client, st, "roundtrip", "k/none") is None


def test_wrong_credentials_are_named(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    st = settings(s3_server.endpoint_url)
    with pytest.raises(s3io.S3Error, match="rejected the credentials"):
        s3io.put_bytes(s3io.client(st), st, "roundtrip", "k", b"data")


def test_missing_bucket_is_named(s3_server):
    st = settings(s3_server.endpoint_url)
    with pytest.raises(s3io.S3Error, match="bucket 'no-such-bucket' does not exist"):
        s3io.put_bytes(s3io.client(st), st, "no-such-bucket", "k", b"data")


def test_unreachable_endpoint_is_named(tmp_path: Path):
    st = settings(f"http://127.0.0.1:{free_port()}", retry_budget_s=2.0)
    with pytest.raises(s3io.S3Error, match="is unreachable"):
        s3io.put_bytes(s3io.client(st), st, "b", "k", b"data")


def test_server_restart_mid_publish_is_retried_then_verified(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    server = SeaweedServer(tmp_path / "s3", free_port(), ACCESS, SECRET).start()
    try:
        st = settings(server.endpoint_url, "restart-bucket")
        client = s3io.client(st)
        s3io.ensure_buckets(client, st, ["restart-bucket"])
        blob = tmp_path / "artifact.bin"
        blob.write_bytes(os.urandom(4 << 20))
        digest = hashlib.sha256(blob.read_bytes()).hexdigest()
        server.stop()  # the server goes away as the publish starts ...
        comeback = threading.Timer(2.0, server.start)  # ... and is back two seconds later
        comeback.start()
        _upload_verified(client, st, blob, "restart-bucket", "v1/artifact.bin", digest)
        comeback.join()
        assert (
            hashlib.sha256(s3io.get_bytes(client, st, "restart-bucket", "v1/artifact.bin") or b"").hexdigest() == digest
        )
    finally:
        server.stop()


def test_an_empty_endpoint_variable_means_aws_and_an_unset_one_params(tmp_path: Path, monkeypatch):
    from tasks.core.project import Project
    from tests.conftest import make_project

    project = Project.at(make_project(tmp_path, {"models": {}, "s3": {"endpoint_url": "http://127.0.0.1:8333"}}))
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    assert s3io.S3Settings.from_project(project).endpoint_url == "http://127.0.0.1:8333"
    monkeypatch.setenv("S3_ENDPOINT_URL", "")  # docs/how-to.md: empty is AWS's own endpoint
    assert s3io.S3Settings.from_project(project).endpoint_url == ""
    monkeypatch.setenv("S3_ENDPOINT_URL", "https://s3.internal")
    assert s3io.S3Settings.from_project(project).endpoint_url == "https://s3.internal"
