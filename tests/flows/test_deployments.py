"""prefect.yaml against a real `prefect server start`: deploy, schedule, manual trigger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.core.project import Project
from tasks.storage import s3 as s3io


def test_nightly_deployment_is_scheduled_at_two_utc(api):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("nightly-compression/nightly")
    crons = [(s.schedule.cron, s.schedule.timezone) for s in nightly.schedules]
    assert crons == [("0 2 * * *", "UTC")] and nightly.work_pool_name == "local-process"


def test_manual_deployment_runs_through_a_worker_with_typed_parameters(api, tiny_project: Path):
    from prefect.deployments import run_deployment

    api.worker("local-process")
    params = {"request": {"models": ["tiny-cnn"], "pools": ["local"], "root": str(tiny_project)}}
    run = run_deployment("manual-compression/manual", parameters=params, timeout=600, poll_interval=2)
    assert run.state is not None and run.state.is_completed(), run.state

    p = Project.at(tiny_project)
    published = json.loads((p.stage_dir("tiny-cnn", "publish") / "published.json").read_text())
    st = s3io.S3Settings.from_project(p)
    manifest = json.loads(
        s3io.client(st)
        .get_object(Bucket=st.publish_bucket, Key=f"tiny-cnn/{published['version']}/local/manifest.json")["Body"]
        .read()
    )
    assert manifest["lineage"]["flow_run_id"]  # the run the worker executed
    assert not p.stage_dir("tiny-text", "baseline").exists()  # only the model the form picked


def test_a_malformed_form_is_refused_before_anything_runs(api):
    from prefect.deployments import run_deployment

    with pytest.raises(Exception, match=r"Validation failed for field 'request'.*'modelz' was unexpected"):
        run_deployment("manual-compression/manual", parameters={"request": {"modelz": ["x"]}}, timeout=0)
