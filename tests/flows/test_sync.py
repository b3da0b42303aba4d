"""dvc.yaml and prefect.yaml are written from one place each: `python -m flows.cli sync`."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from flows import deployments
from flows.cli import app

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_prefect_yaml_is_what_params_yaml_gives():
    assert (REPO / "prefect.yaml").read_text() == deployments.render(REPO), "run python -m flows.cli sync"


def test_each_remote_pool_gets_its_benchmark_deployment_and_no_other(tmp_path: Path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["pools"] = {"local": {"work_pool": None}, "edge-arm": {"work_pool": "edge-arm-pool"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(app, ["sync", "--root", str(tmp_path)])
    assert result.exit_code != 0 and "dvc.yaml lists code files" in str(result.exception)  # no code in tmp_path
    written = yaml.safe_load(deployments.render(tmp_path))
    bench = [d for d in written["deployments"] if d["entrypoint"] == "flows/pool_bench.py:benchmark_onnx"]
    assert [(d["name"], d["work_pool"]["name"]) for d in bench] == [("edge-arm", "edge-arm-pool")]
    assert {d["name"] for d in written["deployments"]} == {"nightly", "manual", "compress-model", "edge-arm"}
    per_model = next(d for d in written["deployments"] if d["name"] == "compress-model")
    assert per_model["work_pool"]["name"] == params["dispatch"]["work_pool"]  # params.yaml names the pool once
