"""Hardware pools against a real `prefect server start`, real process workers, real S3.

The repo's prefect.yaml is deployed with `prefect deploy --all`; one worker serves the
pool named for this machine's CPU family, the others have none.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from model_compression.quantize.onnx_int8 import OnnxInt8Config, count_quantized_nodes, quantize
from model_compression.quantize.presets import preset_for
from model_compression.runtime.fingerprint import fingerprint
from tasks.core.project import Project
from tasks.storage import s3 as s3io
from tests.conftest import LIVE_POOL as LIVE

DEAD = "arm64"


def with_pools(root: Path, **extra: dict) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pools"] = {
        "local": {"work_pool": None, "preset": "avx2", "publish_slower_int8": True},
        LIVE: {"work_pool": LIVE, "timeout_s": 240, "publish_slower_int8": True},
        DEAD: {"work_pool": DEAD, "timeout_s": 20},
        **extra,
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> dict[str, str]:
    """An fp32 two-layer MLP in ONNX and its dynamic int8 version."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).eval()
    fp32 = tmp_path / "mlp.onnx"
    torch.onnx.export(
        net, (torch.randn(1, 64),), fp32, input_names=["x"], dynamic_axes={"x": {0: "batch"}}, dynamo=False
    )
    int8 = quantize(fp32, tmp_path / "mlp-int8.onnx", OnnxInt8Config(mode="dynamic"))
    assert count_quantized_nodes(int8) > 0
    return {"baseline": str(fp32), "quantize": str(int8)}


def test_benchmark_is_dispatched_to_a_pool_and_a_pool_without_worker_is_reported(api, tiny_project, tiny_onnx):
    from flows.pool_bench import benchmark_on_pools

    with_pools(tiny_project)
    settings = {"batch_sizes": [1, 4], "warmup": 2, "runs": 10}
    with s3io.available(Project.at(tiny_project)):
        got = benchmark_on_pools(tiny_onnx, [LIVE, DEAD], str(tiny_project), settings)

    live = got[LIVE]
    assert live["status"] == "benchmarked"
    here = fingerprint()
    assert live["fingerprint"]["cpu"] == here["cpu"] and live["fingerprint"]["flags"] == here["flags"]
    assert live["fingerprint"]["onnxruntime"] and "CPUExecutionProvider" in live["fingerprint"]["providers"]
    assert live["preset"] == preset_for(here)
    assert set(live["results"]) == {"baseline", "quantize"}
    for res in live["results"].values():
        for bs in ("1", "4"):
            r = res[bs]
            assert r["batch_size"] == int(bs) and r["runs"] == 10 and r["threads"] == 1
            assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
            assert r["load_ms"] > 0 and r["peak_rss_mb"] > r["model_rss_mb"] >= 0
            assert isinstance(r["noisy"], bool)
    assert live["speedup_vs_fp32"]["baseline"] == {"1": 1.0, "4": 1.0}
    assert isinstance(live["int8_slower"], list)

    dead = got[DEAD]
    assert dead["status"] == "not benchmarked"
    assert "arm64" in dead["reason"] and "no live worker" in dead["reason"]


def test_a_pool_that_does_not_answer_in_time_is_cancelled_and_reported(api, tiny_project, tiny_onnx):
    from prefect.client.orchestration import get_client

    from flows.pool_bench import benchmark_on_pools

    with_pools(tiny_project, impatient={"work_pool": LIVE, "deployment": f"benchmark-onnx/{LIVE}", "timeout_s": 0.5})
    with s3io.available(Project.at(tiny_project)):
        got = benchmark_on_pools(tiny_onnx, ["impatient"], str(tiny_project))["impatient"]
    assert got["status"] == "not benchmarked" and "timed out after 0.5 s" in got["reason"]
    run_id = re.search(r"run ([0-9a-f-]{36})", got["reason"]).group(1)  # type: ignore[union-attr]
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    assert state is not None and state.name in ("Cancelled", "Cancelling")


def test_unknown_pool_is_an_error_naming_it(api, tiny_project, tiny_onnx):
    from flows.dispatch import dispatch_files

    with_pools(tiny_project)
    with pytest.raises(ValueError, match=r"unknown pool 'riscv'.*arm64"):
        dispatch_files(tiny_onnx, "riscv", str(tiny_project))


def test_nightly_serves_a_remote_pool_with_its_own_int8_preset(api, tiny_project):
    from flows.nightly import nightly

    with_pools(tiny_project)
    result = nightly(models=["tiny-cnn"], root=str(tiny_project), pools=["local", LIVE, DEAD])
    pools = result["tiny-cnn"]["pools"]
    assert pools[DEAD]["status"] == "not benchmarked" and "no live worker" in pools[DEAD]["reason"]
    served = pools[LIVE]
    assert served["status"] == "benchmarked" and served["version"]

    p = Project.at(tiny_project)
    pool_dir = p.stage_dir("tiny-cnn", "pools") / LIVE
    expected = preset_for(fingerprint())
    assert served["preset"] == expected
    variant = pool_dir / "quantize" / "model.onnx"
    if expected != "avx2":  # params pin this machine's pool to avx2: the remote pool differs
        assert variant.is_file() and variant.read_bytes() != p.artifact("tiny-cnn", "quantize").read_bytes()
        record = json.loads((pool_dir / "quantize" / "record.json").read_text())
        assert record["preset"] == expected and record["info"]["reduce_range"] is False
    st = s3io.S3Settings.from_project(p)
    client = s3io.client(st)
    manifest = json.loads(
        client.get_object(Bucket=st.publish_bucket, Key=f"tiny-cnn/{served['version']}/{LIVE}/manifest.json")[
            "Body"
        ].read()
    )
    assert manifest["pool"] == LIVE and manifest["preset"] == expected
    assert manifest["fingerprint"]["cpu"] == fingerprint()["cpu"]
    if expected != "avx2":
        import hashlib

        assert manifest["artifacts"]["quantize"]["sha256"] == hashlib.sha256(variant.read_bytes()).hexdigest()
    local = json.loads((p.stage_dir("tiny-cnn", "publish") / "published.json").read_text())
    assert local["pool"] == "local" and local["version"]


def test_doctor_checks_each_work_pool_for_its_deployment_and_a_live_worker(api, tiny_project):
    """``flows.cli doctor`` (flows/doctor.py), here beside the server it needs."""
    from flows.doctor import work_pools
    from tasks.core.doctor import Options

    with_pools(tiny_project, riscv={"work_pool": "riscv"})
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["targets"] = ["local", LIVE, DEAD]  # the nightly serves these: their workers are required
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the dispatch tests re-deploy compress-model onto their own pools on this (shared) server:
    # put it back where prefect.yaml has it, whatever ran before on this xdist worker
    api.cli("--no-prompt", "deploy", "--name", "compress-model", "--pool", "local-process")
    results = {r.name: r for r in work_pools(Options(tiny_project))}
    assert results[f"work pool {LIVE} (benchmark-onnx/{LIVE})"].ok
    dead = results[f"work pool {DEAD} (benchmark-onnx/{DEAD})"]
    assert (dead.ok, dead.detail, dead.fix) == (
        False,
        f"work pool {DEAD!r} has no live worker",
        f"start one there: prefect worker start --pool {DEAD}",
    )
    # declared but not a target: said, with the fix, without failing the check
    gone = results["work pool riscv (benchmark-onnx/riscv)"]
    assert gone.ok and "not in targets" in gone.detail and gone.fix == "prefect work-pool create --type process riscv"
    dispatch = results["work pool local-process (compress-model/compress-model)"]  # tiny_params: the default
    # not a target: fine either way; whether another test left a worker on it depends on the xdist split
    assert dispatch.ok and (
        dispatch.detail == "deployed, a live worker"
        or dispatch.detail.startswith("work pool 'local-process' has no live worker; not in targets")
    ), dispatch.detail
    assert len(results) == 4
