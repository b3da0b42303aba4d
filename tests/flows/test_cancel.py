"""Stopping a run: SIGTERM mid-stage ends the nightly within seconds, stops the embedded S3
it started, and leaves no unfinished stage output or upload behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, make_project, tiny_params

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return out.stdout.split()


def test_sigterm_mid_stage_stops_promptly_and_leaves_nothing_half_done(
    tmp_path: Path, tiny_bert_dir: Path, tiny_fmnist_dir: Path
):
    port = _free_port()  # nothing answers there: the run starts its own embedded SeaweedFS
    params = tiny_params(f"http://127.0.0.1:{port}", tiny_bert_dir, tiny_fmnist_dir, "cancel")
    params["models"]["tiny-cnn"]["train"]["epochs"] = 400  # a baseline that trains long enough to interrupt
    root = make_project(tmp_path / "project", params)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_"))}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )  # 20 s is short under load
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115  # closed below
    proc = subprocess.Popen([sys.executable, "-m", "flows.nightly", "tiny-cnn"], cwd=root, env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (partials := list((root / "data/tiny-cnn").glob("baseline.partial-*"))):
        assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the baseline never started"
        time.sleep(0.2)
    partial = partials[0]
    assert _alive(str(root / "data/.s3")), "the run should have started its own SeaweedFS"
    time.sleep(1.0)  # well inside the training
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)  # the target is 10 s; a 3x margin for a loaded CI machine
    elapsed = time.monotonic() - t0
    log.close()
    text = (tmp_path / "run.log").read_text()
    assert code == 128 + signal.SIGTERM, text[-3000:]
    assert "SIGTERM received" in text and f"removed the unfinished output {partial}" in text
    assert elapsed < 30
    assert not list(root.glob("data/**/*.partial*")) and not (root / "data/tiny-cnn/baseline").exists()
    assert not _alive(str(root / "data/.s3")), "the embedded SeaweedFS outlived the run"
    assert (root / "data/tiny-cnn/fetch.record.json").is_file()  # what finished before the signal stays
    assert yaml.safe_load((root / "params.yaml").read_text()) == params
