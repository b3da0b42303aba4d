"""Scale-out: the nightly flow spreads models over a local Dask cluster (prefect-dask)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from tasks.core.project import Project

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_two_models_run_on_two_dask_workers_and_both_publish(prefect_api, tiny_project: Path):
    from flows.nightly import nightly

    result = nightly(models=None, root=str(tiny_project), workers=2)
    hosts = {m: r["ran_on"] for m, r in result.items()}
    assert set(hosts) == {"tiny-text", "tiny-cnn"}
    pids = {h.rsplit(":", 1)[1] for h in hosts.values()}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # two worker processes, not this one
    p = Project.at(tiny_project)
    for model in hosts:
        assert json.loads((p.stage_dir(model, "publish") / "published.json").read_text())["version"]


@pytest.fixture
def dask_cluster(prefect_api, tiny_project: Path) -> Iterator[tuple[str, set[int]]]:
    """A real ``dask scheduler`` and two 1-thread ``dask worker`` processes on loopback, with
    this test's Prefect API and S3 credentials in their environment: (address, worker pids)."""
    from distributed import Client
    from prefect.settings import PREFECT_API_URL

    from tasks.storage.seaweed import free_port

    port, dask = free_port(), str(Path(sys.executable).parent / "dask")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO)}
    address = f"tcp://127.0.0.1:{port}"
    logs = tiny_project.parent
    args = [
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        *[[dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"] for _ in range(2)],
    ]
    procs = []
    try:
        for i, a in enumerate(args):
            with open(logs / f"dask-{i}.log", "wb") as log:
                procs.append(subprocess.Popen(a, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))  # fmt: skip
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, {p.pid for p in procs[1:]}
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)


def test_two_models_run_on_an_existing_dask_cluster_by_address(dask_cluster, tiny_project: Path):
    from flows.nightly import nightly

    address, worker_pids = dask_cluster
    result = nightly(models=None, root=str(tiny_project), dask_address=address)
    pids = {int(r["ran_on"].rsplit(":", 1)[1]) for r in result.values()}
    assert set(result) == {"tiny-text", "tiny-cnn"} and pids <= worker_pids  # the cluster's processes did it
    p = Project.at(tiny_project)
    for model in result:
        assert json.loads((p.stage_dir(model, "publish") / "published.json").read_text())["version"]


def test_an_existing_cluster_without_a_served_prefect_api_is_refused():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.nightly import existing_cluster

    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),  # the ephemeral API: loopback, gone after the run
        pytest.raises(ValueError, match=r"Dask cluster at tcp://10\.0\.0\.1:8786 needs a Prefect API"),
    ):
        existing_cluster("tcp://10.0.0.1:8786")


def test_impossible_worker_count_is_an_error(prefect_api, tiny_project: Path):
    from flows.nightly import nightly

    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        nightly(models=["tiny-cnn"], root=str(tiny_project), workers=0)


def test_a_dry_run_stops_after_the_benchmark_and_uploads_nothing(prefect_api, tiny_project: Path):
    from flows.nightly import nightly
    from tasks.storage import s3 as s3io

    result = nightly(models=["tiny-cnn"], root=str(tiny_project), publish=False)
    assert "benchmark" in result["tiny-cnn"] and "publish" not in result["tiny-cnn"]
    p = Project.at(tiny_project)
    assert (p.stage_dir("tiny-cnn", "benchmark") / "bench.json").is_file()
    assert not p.stage_dir("tiny-cnn", "publish").exists()
    st = s3io.S3Settings.from_project(p)
    assert s3io.client(st).list_objects_v2(Bucket=st.publish_bucket).get("KeyCount", 0) == 0
