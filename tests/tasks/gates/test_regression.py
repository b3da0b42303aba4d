"""The regression gate against a planted "previous" version in the real S3."""

import json
from pathlib import Path

import pytest
import yaml

from model_compression.hashing import sha256_file
from tasks.core.pipeline import stage
from tasks.core.project import Project
from tasks.gates.regression import RegressionGateError
from tasks.storage import s3 as s3io
from tests.conftest import run_until

PREV = "prev000000000000"


def plant_previous(p: Project, artifact: str, source: Path) -> list[str]:
    """Publish ``source`` as ``artifact`` of a previous version, manifest and latest.json
    included, the way the publish stage lays them out; returns the keys written."""
    with s3io.available(p) as (s3, settings):
        bucket = settings.publish_bucket
        key = f"tiny-cnn/{PREV}/local/{artifact}/model.onnx"
        s3io.upload_file(s3, settings, source, bucket, key)
        manifest = {
            "model": "tiny-cnn",
            "version": PREV,
            "pool": "local",
            "artifacts": {artifact: {"uri": f"s3://{bucket}/{key}", "sha256": sha256_file(source)}},
        }
        mkey = f"tiny-cnn/{PREV}/local/manifest.json"
        s3io.put_bytes(s3, settings, bucket, mkey, json.dumps(manifest).encode())
        pointer = {"version": PREV, "manifest": mkey}
        s3io.put_bytes(s3, settings, bucket, "tiny-cnn/local/latest.json", json.dumps(pointer).encode())
    return sorted([key, mkey, "tiny-cnn/local/latest.json"])


def test_a_planted_quality_regression_fails_the_gate_and_publishes_nothing(tiny_built: Path):
    params = yaml.safe_load((tiny_built / "params.yaml").read_text())
    params["models"]["tiny-cnn"]["prune"]["sparsity"] = 0.97  # far worse than fp32, inside the lax tolerance
    params["models"]["tiny-cnn"]["search"] = None
    (tiny_built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_until(tiny_built, "tiny-cnn", "benchmark")
    p = Project.at(tiny_built)
    rows = {r["artifact"]: r for r in p.read_output("tiny-cnn", "validate", "validation.json")["rows"]}
    assert rows["prune"]["passed"] and rows["prune"]["accuracy_drop"] > 0.05
    # last night's "prune" was as good as fp32: tonight's is a regression against it
    keys = plant_previous(p, "prune", p.artifact("tiny-cnn", "baseline"))
    with pytest.raises(
        RegressionGateError,
        match=rf"regression gate failed for tiny-cnn: prune: accuracy -0\.\d+ against version {PREV} "
        r"\(95% CI \[-0\.\d+, -0\.\d+\] below -0\)",
    ):
        stage("publish").run("tiny-cnn", str(tiny_built))
    with s3io.available(p) as (s3, settings):  # nothing uploaded; latest still names the previous version
        assert s3io.list_keys(s3, settings, settings.publish_bucket, "tiny-cnn/") == keys
        latest = s3io.get_bytes(s3, settings, settings.publish_bucket, "tiny-cnn/local/latest.json")
        assert json.loads(latest or b"{}")["version"] == PREV
    assert not p.stage_dir("tiny-cnn", "publish").exists()


def test_the_same_quality_passes_and_the_comparison_is_recorded(tiny_built: Path):
    params = yaml.safe_load((tiny_built / "params.yaml").read_text())
    params["models"]["tiny-cnn"]["search"] = None
    params["regression"] = {"latency_margin": 10.0}  # tiny models' timings: only the quality is under test
    (tiny_built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_until(tiny_built, "tiny-cnn", "benchmark")
    p = Project.at(tiny_built)
    # previous "quantize" = tonight's fp32: different bytes, int8 costs no significant accuracy
    plant_previous(p, "quantize", p.artifact("tiny-cnn", "baseline"))
    stage("publish").run("tiny-cnn", str(tiny_built))
    version = p.read_output("tiny-cnn", "publish", "published.json")["version"]
    with s3io.available(p) as (s3, settings):
        raw = s3io.get_bytes(s3, settings, settings.publish_bucket, f"tiny-cnn/{version}/local/manifest.json")
    gate = json.loads(raw or b"{}")["regression"]
    assert gate["previous_version"] == PREV and gate["passed"]
    q = gate["artifacts"]["quantize"]["quality"]
    assert q["metric"] == "accuracy" and q["examples"] == 500
    assert q["delta"]["low"] <= q["delta"]["estimate"] <= q["delta"]["high"] and q["delta"]["high"] >= 0
    lat = gate["artifacts"]["quantize"]["latency"]
    assert lat["rounds"] == 7 and lat["ratio"]["low"] > 0
    assert set(gate["artifacts"]) == {"quantize"}  # only names published both times are compared


def test_bad_regression_settings_are_named(tiny_project: Path):
    from tasks.gates.regression import config

    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["regression"] = {"rounds": 1}
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ValueError, match=r"RegressionConfig.rounds is out of range: 1"):
        config(Project.at(tiny_project))
    params["regression"] = {"margin": 0.1}
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ValueError, match=r"regression: unknown field\(s\) \['margin'\]"):
        config(Project.at(tiny_project))
