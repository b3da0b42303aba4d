"""Stage logic through ``Stage.run`` (what the Prefect tasks and ``python -m tasks`` call), on the tiny project."""

import json
from pathlib import Path

import pytest
import yaml

from model_compression.hashing import sha256_file
from tasks.core.pipeline import stage
from tasks.core.project import Project
from tasks.core.stage import read_record
from tasks.storage import s3 as s3io
from tests.conftest import run_until


def test_cnn_stages_produce_measured_artifacts(tiny_built: Path):
    run_until(tiny_built, "tiny-cnn", "report")
    p = Project.at(tiny_built)
    base = read_record(p.stage_dir("tiny-cnn", "baseline"))
    assert base["summary"]["parameters"] == 4 * 9 + 4 + 8 * 4 * 9 + 8 + 8 * 49 * 16 + 16 + 16 * 10 + 10
    prune = read_record(p.stage_dir("tiny-cnn", "prune"))["summary"]
    assert prune["sparsity"] == pytest.approx(0.5, abs=0.01)
    quant = read_record(p.stage_dir("tiny-cnn", "quantize"))["summary"]
    assert quant["mode"] == "static" and quant["quantized_nodes"] >= 8 and quant["calibration_batches"] == 2
    distill = read_record(p.stage_dir("tiny-cnn", "distill"))["summary"]
    assert distill["parameters"] == 2 * 9 + 2 + 4 * 2 * 9 + 4 + 4 * 49 * 8 + 8 + 8 * 10 + 10  # 1,762
    rows = {
        r["artifact"]: r
        for r in json.loads((p.stage_dir("tiny-cnn", "validate") / "validation.json").read_text())["rows"]
    }
    assert rows["baseline"]["agreement_to_fp32"] == 1.0
    assert rows["quantize"]["agreement_to_fp32"] > 0.9
    assert rows["quantize"]["size_bytes"] < rows["baseline"]["size_bytes"]
    assert rows["prune"]["weight_density"] < 0.6
    assert rows["prune"]["entropy_bound_bytes"] < rows["baseline"]["entropy_bound_bytes"]
    packages = json.loads((p.stage_dir("tiny-cnn", "package") / "package.json").read_text())
    assert set(packages) == set(rows)
    for name, pk in packages.items():  # decoded and checked by the stage; tiny tensors pay for their codebooks
        assert pk["entropy_bound_bytes"] == rows[name]["entropy_bound_bytes"] and 1.0 <= pk["coded_vs_bound"] < 1.2
        assert pk["package_bytes"] == (p.stage_dir("tiny-cnn", "package") / f"{name}.mcpk").stat().st_size
    assert packages["prune"]["package_bytes"] < 0.8 * packages["baseline"]["package_bytes"]
    # float weights coded at 8 bits decode to another model: evaluated on its own, beside its ratio
    inexact = {n for n, pk in packages.items() if not pk["exact"]}
    assert inexact == {"baseline", "prune", "factorize", "distill"}  # int8 and k-means packages are exact
    validation = json.loads((p.stage_dir("tiny-cnn", "validate") / "validation.json").read_text())
    assert set(validation["packages"]) == inexact
    decoded = validation["packages"]["baseline"]
    assert decoded["artifact"] == "baseline.mcpk" and abs(decoded["accuracy"] - rows["baseline"]["accuracy"]) < 0.02
    metrics = json.loads((p.stage_dir("tiny-cnn", "report") / "metrics.json").read_text())
    assert metrics["quantize"]["uri"].startswith("s3://")
    assert metrics["quantize"]["package_exact"] and not metrics["prune"]["package_exact"]
    assert metrics["prune"]["package_quality"] == round(validation["packages"]["prune"]["accuracy"], 4)
    assert metrics["baseline"]["p50_ms"] > 0
    selected = json.loads((p.stage_dir("tiny-cnn", "report") / "selection.json").read_text())
    smallest = min((m["size_bytes"], s) for s, m in metrics.items() if s != "baseline" and m["uri"])[1]
    assert selected["policy"] == "smallest" and selected["selected"] == smallest
    assert selected["uri"] == metrics[smallest]["uri"]
    base = metrics["baseline"]
    # the baseline's package is inexact: its data part is the labels' code length under what it decodes to
    assert base["mdl_bits"] == pytest.approx(8 * base["package_bytes"] + decoded["nll_bits"], abs=0.1)
    assert base["transfer_ratio"] == pytest.approx(rows["baseline"]["size_bytes"] / base["package_bytes"], rel=1e-3)


def test_sidecar_records_and_up_to_date_skip(tiny_project: Path):
    first = run_until(tiny_project, "tiny-text", "prune")
    p = Project.at(tiny_project)
    out = p.stage_dir("tiny-text", "prune")
    assert first["params"]["model.prune"]["sparsity"] == 0.5
    assert set(first["inputs"]) == {"baseline"}
    assert "model_compression.prune.magnitude" in first["code"] and "tasks.stages.prune" in first["code"]
    assert first["outputs"]["model.onnx"] == sha256_file(out / "model.onnx")
    assert {"torch", "onnxruntime", "python"} <= set(first["versions"])
    mtime = (out / "model.onnx").stat().st_mtime_ns
    again = stage("prune").run("tiny-text", str(tiny_project))
    assert again["key"] == first["key"]
    assert (out / "model.onnx").stat().st_mtime_ns == mtime  # skipped, not rewritten
    # a params change makes the stage stale and re-runs it
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["models"]["tiny-text"]["prune"]["sparsity"] = 0.25
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params))
    third = stage("prune").run("tiny-text", str(tiny_project))
    assert third["key"] != first["key"]
    assert third["summary"]["sparsity"] == pytest.approx(0.25, abs=0.01)
    # a damaged output is detected and rebuilt
    (out / "model.onnx").write_bytes(b"garbage")
    fourth = stage("prune").run("tiny-text", str(tiny_project))
    assert sha256_file(out / "model.onnx") == fourth["outputs"]["model.onnx"] == third["outputs"]["model.onnx"]


def test_failed_tolerance_is_not_published(tiny_built: Path):
    params = yaml.safe_load((tiny_built / "params.yaml").read_text())
    params["models"]["tiny-cnn"]["tolerance"] = {"agreement_to_fp32": 0.0}  # any disagreement fails
    (tiny_built / "params.yaml").write_text(yaml.safe_dump(params))
    run_until(tiny_built, "tiny-cnn", "publish")
    p = Project.at(tiny_built)
    published = json.loads((p.stage_dir("tiny-cnn", "publish") / "published.json").read_text())
    validation = json.loads((p.stage_dir("tiny-cnn", "validate") / "validation.json").read_text())
    failed = {r["artifact"]: r["reasons"] for r in validation["rows"] if not r["passed"]}
    assert "distill" in failed and "agreement_to_fp32 dropped" in failed["distill"][0]
    assert set(published["artifacts"]).isdisjoint(failed)
    st = s3io.S3Settings.from_project(p)
    client = s3io.client(st)
    s3io.ensure_buckets(client, st, [st.publish_bucket])  # nothing may have been published at all
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=st.publish_bucket).get("Contents", [])]
    assert not any("/distill/" in k for k in keys)
    # nothing passed (no artifact agrees with fp32 on every image): the report says so first, with each reason
    assert published["version"] is None
    run_until(tiny_built, "tiny-cnn", "report")
    page = (p.stage_dir("tiny-cnn", "report") / "report.html").read_text()
    top = page[page.index("</h1>") : page.index("<h2>")]
    assert '<div class="alert"><b>Nothing published</b> for pool local' in top
    for name in ("prune", "quantize", "factorize", "distill", "tiny-deep-compression"):  # int8 slower is allowed here
        assert f"<b>{name}</b>: no: failed tolerance: agreement_to_fp32 dropped" in top, name
    assert "<b>search</b>: no: no trial passed (3 of 3 run); nearest miss: trial" in top
    assert "<b>Selected artifact: none</b>" in top


def test_unknown_model_and_bad_tolerance_are_named(tiny_project: Path):
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        stage("score").run("nope", str(tiny_project))
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["models"]["tiny-cnn"]["tolerance"] = {"acuracy": 0.1}
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params))
    from tasks.gates.tolerance import tolerance

    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['acuracy'\]"):
        tolerance(Project.at(tiny_project), "tiny-cnn")


def test_missing_upstream_output_is_named(tiny_project: Path):
    with pytest.raises(FileNotFoundError, match="input baseline missing"):
        stage("prune").run("tiny-cnn", str(tiny_project))


def test_tampered_zoo_object_fails_fetch_checksum(tiny_project: Path):
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    own = {"zoo_bucket": f"{params['s3']['publish_bucket']}-zoo"}  # not the zoo the other tests share
    params["s3"].update(own)
    params["models"]["tiny-cnn"]["source"] = f"s3://{own['zoo_bucket']}/tiny-fmnist"
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params))
    stage("zoo").run("tiny-cnn", str(tiny_project))
    p = Project.at(tiny_project)
    st = s3io.S3Settings.from_project(p)
    bucket, prefix = s3io.parse_uri(p.entry("tiny-cnn")["source"])
    s3io.put_bytes(s3io.client(st), st, bucket, f"{prefix}/t10k-labels-idx1-ubyte.gz", b"tampered")
    with pytest.raises(ValueError, match=r"checksum mismatch for s3://.*/t10k-labels-idx1-ubyte.gz"):
        stage("fetch").run("tiny-cnn", str(tiny_project))
    assert not p.stage_dir("tiny-cnn", "fetch").exists()  # nothing half-fetched is left as output


def test_truncated_checkpoint_is_a_clear_error(tiny_project: Path):
    run_until(tiny_project, "tiny-cnn", "baseline")
    p = Project.at(tiny_project)
    weights = p.stage_dir("tiny-cnn", "baseline") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt CNN checkpoint"):
        stage("prune").run("tiny-cnn", str(tiny_project))


def test_nan_weights_are_refused_before_compression(tiny_project: Path):
    from safetensors.torch import load_file, save_file

    run_until(tiny_project, "tiny-cnn", "baseline")
    weights = Project.at(tiny_project).stage_dir("tiny-cnn", "baseline") / "model.safetensors"
    state = load_file(weights)
    state["classifier.1.weight"][0, 0] = float("nan")
    save_file(state, weights)
    with pytest.raises(ValueError, match=r"weight 'classifier.1.weight' .* contains NaN or Inf"):
        stage("prune").run("tiny-cnn", str(tiny_project))
