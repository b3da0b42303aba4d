"""The per-model lease on a real SeaweedFS: one holder at a time, named to whoever waits,
renewed while held, and broken only when its holder is gone or it has expired."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import boto3
import pytest

from tasks.storage import lease
from tasks.storage.lease import Holder, LeaseBusy, held
from tasks.storage.s3 import S3Settings, ensure_buckets


@pytest.fixture
def store(s3_server, request):
    bucket = f"lease-{request.node.name[:30].replace('_', '-').lower()}".rstrip("-")
    settings = S3Settings(endpoint_url=s3_server.endpoint_url, region="us-east-1", zoo_bucket=bucket,
                          publish_bucket=bucket, dvc_bucket=bucket)  # fmt: skip
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint_url, aws_access_key_id=s3_server.access_key,
                      aws_secret_access_key=s3_server.secret_key, region_name="us-east-1")  # fmt: skip
    ensure_buckets(s3, settings, [bucket])
    return s3, settings


def _holder_of(s3, settings, model: str) -> dict:
    return json.loads(s3.get_object(Bucket=settings.publish_bucket, Key=f"_leases/{model}.json")["Body"].read())


def test_a_second_run_is_told_who_holds_the_model_and_skips(store):
    s3, settings = store
    with held(s3, settings, "m", run="nightly-1"):
        assert _holder_of(s3, settings, "m")["run"] == "nightly-1"
        busy = r"m is being compressed by run nightly-1 \(pid \d+ on .*, since .*UTC\)"
        with pytest.raises(LeaseBusy, match=busy), held(s3, settings, "m", run="manual-2", on_busy="skip"):
            pass
    with held(s3, settings, "m", run="manual-2", on_busy="skip"):  # released: free again
        assert _holder_of(s3, settings, "m")["run"] == "manual-2"


def test_a_waiting_run_takes_the_lease_when_the_holder_is_done(store, caplog):
    s3, settings = store
    got = threading.Event()
    with held(s3, settings, "w", run="first"):
        waiter = threading.Thread(target=lambda: _wait_for(s3, settings, got))
        waiter.start()
        time.sleep(1.0)
        assert not got.is_set()  # still waiting while the first run holds it
    waiter.join(timeout=30)
    assert got.is_set() and "w is being compressed by run first" in caplog.text


def _wait_for(s3, settings, got: threading.Event) -> None:
    with held(s3, settings, "w", run="second", poll_s=0.2):
        got.set()


def test_the_lease_is_renewed_while_held_so_a_long_stage_keeps_it(store):
    s3, settings = store
    with held(s3, settings, "r", run="long", ttl_s=0.9) as mine:
        first = mine.etag
        time.sleep(2.0)  # over twice the ttl: only renewal keeps it
        assert mine.etag != first and not mine.lost.is_set()
        with pytest.raises(LeaseBusy, match="run long"), held(s3, settings, "r", run="other", on_busy="skip"):
            pass


def test_a_lease_whose_holder_is_dead_or_expired_is_broken(store, caplog):
    s3, settings = store
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = Holder(**{**Holder.me("killed-run", 3600).__dict__, "pid": int(gone.stdout)})
    s3.put_object(Bucket=settings.publish_bucket, Key="_leases/d.json", Body=lease._body(dead))
    with held(s3, settings, "d", run="next", on_busy="skip"):
        assert _holder_of(s3, settings, "d")["run"] == "next"
    assert f"its pid {dead.pid} is gone" in caplog.text
    old = Holder("other-host-run", 1, "elsewhere", "another-boot", time.time() - 900, time.time() - 600)
    s3.put_object(Bucket=settings.publish_bucket, Key="_leases/e.json", Body=lease._body(old))
    with held(s3, settings, "e", run="next", on_busy="skip"):
        assert _holder_of(s3, settings, "e")["run"] == "next"
    assert "expired 600 s ago" in caplog.text or "expired 60" in caplog.text


def test_on_busy_must_be_wait_or_skip(store):
    s3, settings = store
    with (
        pytest.raises(ValueError, match="on_busy must be 'wait' or 'skip', got 'queue'"),
        held(s3, settings, "x", on_busy="queue"),
    ):
        pass
