"""The doctor's S3 check against a real SeaweedFS: all green, a missing bucket, a stopped
endpoint, rejected credentials, and the embedded default."""

import time
from pathlib import Path

import pytest
import yaml

from tasks.core.doctor import Options, Result
from tasks.core.project import Project
from tasks.storage import s3 as s3io
from tasks.storage.doctor import s3
from tasks.storage.seaweed import free_port, port_open
from tests.conftest import make_project


def buckets(root: Path) -> s3io.S3Settings:
    return s3io.S3Settings.from_project(Project.at(root))


def lines(results: list[Result]) -> list[tuple[str, bool]]:
    return [(r.name, r.ok) for r in results]


def test_a_configured_endpoint_with_every_bucket_is_all_green(tiny_project: Path, s3_server, monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.endpoint_url)
    st = buckets(tiny_project)
    s3io.ensure_buckets(s3io.client(st), st, st.buckets)
    results = s3(Options(tiny_project))
    assert lines(results) == [
        ("s3 credentials", True),
        ("s3 endpoint", True),
        *((f"s3 bucket {b}", True) for b in st.buckets),
    ]
    assert results[0].detail == "an access key id from AWS_ACCESS_KEY_ID in the environment"
    assert "test-secret-key" not in repr(results)


def test_a_missing_bucket_is_a_fail_line_naming_it_until_created(tiny_project: Path, s3_server, monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.endpoint_url)
    st = buckets(tiny_project)
    s3io.ensure_buckets(s3io.client(st), st, [st.zoo_bucket, st.dvc_bucket])
    results = {r.name: r for r in s3(Options(tiny_project))}
    missing = results[f"s3 bucket {st.publish_bucket}"]
    assert not missing.ok
    assert missing.detail == f"bucket {st.publish_bucket!r} does not exist at {s3_server.endpoint_url}"
    assert missing.fix.startswith("create it: python -m flows.cli doctor --create-buckets")
    assert [r.name for r in results.values() if not r.ok] == [missing.name]
    created = {r.name: r for r in s3(Options(tiny_project, create_buckets=True))}
    assert created[missing.name] == Result(missing.name, True, "created, versioning on (--create-buckets)")
    assert all(r.ok for r in s3(Options(tiny_project)))


def test_a_stopped_endpoint_fails_in_seconds_with_the_fix(tiny_project: Path, monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("S3_ENDPOINT_URL", closed)
    start = time.monotonic()
    results = s3(Options(tiny_project))
    assert time.monotonic() - start < 5
    assert lines(results) == [("s3 credentials", True), ("s3 endpoint", False)]
    assert results[1].detail == f"S3 endpoint {closed} is unreachable (EndpointConnectionError)"
    assert results[1].fix == f"start the S3 server at {closed}, or set S3_ENDPOINT_URL to one that runs"


def test_rejected_credentials_are_a_fail_line(tiny_project: Path, s3_server, monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    results = s3(Options(tiny_project))
    assert lines(results) == [("s3 credentials", True), ("s3 endpoint", False)]
    assert "rejected the credentials" in results[1].detail and "AWS_ACCESS_KEY_ID" in results[1].fix


def test_the_embedded_server_answering_lacks_no_bucket_it_creates_itself(tiny_project: Path, monkeypatch):
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)  # tiny_project's endpoint: the loopback fixture server
    st = buckets(tiny_project)
    results = s3(Options(tiny_project))
    assert all(r.ok for r in results), results
    assert Result(f"s3 bucket {st.publish_bucket}", True, "missing: created by the first run that uses the "
                  "embedded S3") in results  # fmt: skip


def embedded_project(tmp_path: Path, port: int) -> Path:
    params = yaml.safe_load((Path(__file__).parents[3] / "params.yaml").read_text())
    params["s3"]["endpoint_url"] = f"http://127.0.0.1:{port}"
    return make_project(tmp_path / "project", params)


def test_the_embedded_default_not_running_is_started_on_demand(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    port = free_port()
    [result] = s3(Options(embedded_project(tmp_path, port)))
    assert result.name == "s3 embedded" and result.ok
    assert result.detail.endswith(f"starts on demand at http://127.0.0.1:{port}; --start-s3 starts it to check it")


@pytest.mark.slow  # starts a SeaweedFS of its own
def test_start_s3_starts_the_embedded_server_checks_it_and_stops_it(tmp_path: Path, monkeypatch):
    for name in ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    root = embedded_project(tmp_path, port)
    results = s3(Options(root, start_s3=True))
    assert lines(results) == [
        ("s3 embedded", True),
        ("s3 credentials", True),
        ("s3 endpoint", True),
        *((f"s3 bucket {b}", True) for b in buckets(root).buckets),
    ]
    assert results[1].detail == "the embedded server's local defaults (AWS_ACCESS_KEY_ID is not set)"
    assert not port_open("127.0.0.1", port)  # the last user left: stopped
