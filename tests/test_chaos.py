"""Three seeded kills, as a machine losing power would stop a run: during quantize, during
the upload of a version, and just before its manifest. After each, S3 holds nothing a
reader could take for a complete publish, and a rerun converges on the undisturbed
artifacts, byte for byte. (The long soak, with random kills and a killed S3 server, is
``bench/chaos.py``.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model_compression.hashing import sha256_file
from tasks.core import faults
from tasks.core.pipeline import stage
from tasks.core.project import Project
from tasks.pools import profile_kernels
from tasks.publishing import audit
from tasks.storage import s3 as s3io
from tasks.storage.lease import held
from tests.conftest import REPO, run_until

pytestmark = pytest.mark.slow
MODEL = "tiny-cnn"


def _run(root: Path, name: str, kill: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env["PYTHONPATH"] = str(REPO)
    if kill:
        env[faults.ENV] = kill
    cmd = [sys.executable, "-m", "tasks", name, MODEL, "--root", str(root)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _artifacts(root: Path) -> dict[str, str]:
    folder = root / "data" / MODEL  # a recipe's artifact is one level deeper: recipe/<name>/
    return {p.parent.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("model.onnx"))}


def _forget(root: Path, name: str) -> None:
    shutil.rmtree(root / "data" / MODEL / name)
    (root / "data" / MODEL / f"{name}.record.json").unlink()


def _s3(root: Path):
    settings = s3io.S3Settings.from_project(Project.at(root))
    return s3io.client(settings), settings


def _unpublish(root: Path) -> None:
    """Empty the model's published versions, so the next publish uploads for real."""
    s3, settings = _s3(root)
    for key in s3io.list_keys(s3, settings, settings.publish_bucket, f"{MODEL}/"):
        s3.delete_object(Bucket=settings.publish_bucket, Key=key)


def test_seeded_kills_leave_s3_consistent_and_reruns_converge(tiny_built: Path):
    root = tiny_built
    published = stage("publish").run(MODEL, str(root))["summary"]  # the undisturbed run
    reference, s3_settings = _artifacts(root), _s3(root)
    assert published["version"] and audit(*s3_settings, MODEL)["problems"] == []

    _forget(root, "quantize")
    killed = _run(root, "quantize", kill="quantize:built")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (root / "data" / MODEL / "quantize").exists()  # no output that looks done
    assert list((root / "data" / MODEL).glob("quantize.partial-*"))  # what the killed run left
    assert _run(root, "quantize").returncode == 0
    assert not list((root / "data" / MODEL).glob("quantize.partial-*"))  # its leftovers removed
    assert _artifacts(root) == reference

    for point in ("upload", "manifest"):
        _unpublish(root)
        _forget(root, "publish")
        killed = _run(root, "publish", kill=point)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        state = audit(*s3_settings, MODEL)
        assert state["problems"] == [] and state["versions"] == []  # nothing a reader could take as published
        assert state["incomplete"] == [f"{MODEL}/{published['version']}/local"]
        rerun = _run(root, "publish")
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        state = audit(*s3_settings, MODEL)
        assert state["problems"] == [] and state["incomplete"] == []
        assert state["versions"] == [f"{MODEL}/{published['version']}/local"]
    assert _artifacts(root) == reference


def _nightly(root: Path, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != faults.ENV}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.update(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120", PREFECT_LOGGING_EXTRA_LOGGERS="pipeline")
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "flows.nightly", MODEL], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def test_two_nightly_runs_on_one_checkout_take_turns_and_build_the_same_bytes(tiny_built: Path, tmp_path: Path):
    root, home = tiny_built, tmp_path / "prefect"  # one checkout, one PREFECT_HOME: as two `make nightly`
    # the kernel profile a nightly measures when there is none, measured here first: int8 reads
    # it, and a 2 ms tiny profile can flip a choice under load, so the reference uses the same
    profile_kernels(Project.at(root))
    run_until(root, MODEL, "search")  # the stages that read the profile, under it
    reference = _artifacts(root)
    _forget(root, "quantize")  # real work for whichever run goes first
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    # a third party holds the model while both start, so that they surely overlap
    with s3io.available(Project.at(root)) as (s3, settings), held(s3, settings, MODEL, run="test-holder"):
        runs = [_nightly(root, home, log) for log in logs]
        deadline = time.monotonic() + 600
        while not all("waiting (on_busy=wait)" in log.read_text() for log in logs):
            assert all(p.poll() is None for p in runs), "\n\n".join(log.read_text()[-3000:] for log in logs)
            assert time.monotonic() < deadline, "the runs never reached the model's lease"
            time.sleep(0.5)
    codes = [p.wait(timeout=900) for p in runs]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n\n".join(t[-3000:] for t in texts)
    assert all(
        f"{MODEL} is being compressed by run test-holder (pid" in t for t in texts
    )  # each said whom it waited for
    assert _artifacts(root) == reference and not list(root.glob("data/**/*.partial-*"))
    state = audit(s3, settings, MODEL)
    assert state["problems"] == [] and len(state["versions"]) == 1 and state["incomplete"] == []
