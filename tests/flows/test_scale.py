"""Scale-out: the nightly flow spreads models over a local Dask cluster (prefect-dask)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from tasks.core.project import Project


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
