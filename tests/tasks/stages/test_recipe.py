"""The recipe stage: a named chain from params.yaml, run on the tiny catalogue models."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import numpy_helper

from model_compression.info.package import rebuild
from model_compression.runtime.session import make_session
from tasks.core.pipeline import stage
from tasks.core.project import Project
from tests.conftest import run_until


def test_deep_compression_recipe_thins_prunes_shares_and_packs_exactly(tiny_built: Path):
    run_until(tiny_built, "tiny-cnn", "search")  # the package stage packs every artifact
    p = Project.at(tiny_built)
    summary = json.loads((p.data / "tiny-cnn" / "recipe.record.json").read_text())["summary"]
    assert summary["recipe"] == "tiny-deep-compression" and summary["storage_only"]
    assert summary["steps"] == ["prune_channels", "finetune", "prune", "kmeans"]
    steps = json.loads((p.stage_dir("tiny-cnn", "recipe") / "steps.json").read_text())
    assert steps[0]["units"] == {
        "features.0": [4, 2], "features.3": [8, 4], "classifier.1": [16, 8], "classifier.3": [10, 10]
    }  # fmt: skip
    assert summary["parameters"] == (2 * 9 + 2) + (4 * 2 * 9 + 4) + (4 * 49 * 8 + 8) + (8 * 10 + 10)
    assert steps[2]["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert steps[3]["max_distinct_values"] <= 2**3 + 1
    inits = {
        i.name: numpy_helper.to_array(i) for i in onnx.load(str(p.artifact("tiny-cnn", "recipe"))).graph.initializer
    }
    fc = inits["classifier.1.weight"]
    assert fc.shape == (8, 4 * 49) and (fc == 0).mean() >= 0.55 and np.unique(fc).size <= 9
    assert p.artifact("tiny-cnn", "recipe").stat().st_size < 0.6 * p.artifact("tiny-cnn", "baseline").stat().st_size

    stage("package").run("tiny-cnn", str(tiny_built))
    packages = json.loads((p.stage_dir("tiny-cnn", "package") / "package.json").read_text())
    assert packages["recipe"]["package_bytes"] < packages["prune"]["package_bytes"]
    rebuilt = rebuild(p.stage_dir("tiny-cnn", "package") / "recipe.mcpk", tiny_built / "rebuilt.onnx")
    feeds = p.kind("tiny-cnn").calibration(p, "tiny-cnn")[0]
    got = make_session(rebuilt).run(None, feeds)[0]
    assert np.array_equal(got, make_session(p.artifact("tiny-cnn", "recipe")).run(None, feeds)[0])


def test_drop_in_recipe_fuses_codes_the_table_below_4_bits_and_quantizes_matmuls(tiny_built: Path):
    summary = run_until(tiny_built, "tiny-text", "recipe")["summary"]
    p = Project.at(tiny_built)
    steps = json.loads((p.stage_dir("tiny-text", "recipe") / "steps.json").read_text())
    assert [s["step"] for s in steps] == ["fuse", "embed_lowbit", "int8"] and not summary["storage_only"]
    assert steps[0]["fused"]["Attention"] == 2 and steps[2]["quantized_nodes"] > 0
    table = steps[1]["tables"]["encoder.embeddings.word_embeddings.weight"]
    assert 2.4 < table["mean_bits"] <= 2.5 and table["bytes_after"] < table["bytes_before"] / 7
    ops = {n.op_type for n in onnx.load(str(p.artifact("tiny-text", "recipe"))).graph.node}
    assert {"MatMulInteger", "Where", "Mod"} <= ops  # int8 MatMuls; the table decoded tier by tier
    ref, out = make_session(p.artifact("tiny-text", "baseline")), make_session(p.artifact("tiny-text", "recipe"))
    for feeds in p.kind("tiny-text").calibration(p, "tiny-text"):
        a, b = ref.run(None, feeds)[0], out.run(None, feeds)[0]
        assert float((a * b).sum(-1).min()) > 0.95  # unit vectors: the cosine to fp32


def test_an_unknown_recipe_name_is_named(tiny_built: Path):
    params = yaml.safe_load((tiny_built / "params.yaml").read_text())
    params["models"]["tiny-cnn"]["recipe"] = "deep-compresion"
    (tiny_built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_until(tiny_built, "tiny-cnn", "distill")
    with pytest.raises(ValueError, match=r"models.tiny-cnn.recipe names 'deep-compresion', which is not in recipes"):
        stage("recipe").run("tiny-cnn", str(tiny_built))


def test_an_encoder_recipe_drops_layers_prunes_heads_and_fine_tunes_on_text(tiny_built: Path):
    params = yaml.safe_load((tiny_built / "params.yaml").read_text())
    params["recipes"]["tiny-re-embed"] = [
        {"step": "layer_drop", "keep": [1]},
        {"step": "prune_transformer", "heads": 0.5, "neurons": 0.5},
        {"step": "finetune", "steps": 4, "batch_size": 8, "lr": 0.001, "max_length": 16},
        {"step": "int8", "op_types": ["MatMul"]},
    ]
    params["models"]["tiny-text"]["recipe"] = "tiny-re-embed"
    (tiny_built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    summary = run_until(tiny_built, "tiny-text", "recipe")["summary"]
    steps = json.loads((Project.at(tiny_built).stage_dir("tiny-text", "recipe") / "steps.json").read_text())
    assert [s["step"] for s in steps] == ["layer_drop", "prune_transformer", "finetune", "int8"]
    assert steps[1]["kept_heads_neurons"] == {"layer.0": [1, 32]}  # 1 of 2 heads, 32 of 64 neurons
    assert steps[2]["loss_last"] > 0 and summary["parameters"] < steps[0]["parameters"]
