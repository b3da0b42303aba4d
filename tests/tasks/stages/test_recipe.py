"""The recipe stage: a named chain from params.yaml, run on the tiny catalogue models."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import numpy_helper

from model_compression.info.package import rebuild
from model_compression.quantize.onnx_codebook import PREFIX, dense
from model_compression.runtime.session import make_session
from tasks.core.pipeline import stage
from tasks.core.project import Project
from tests.conftest import run_until

DC = "tiny-deep-compression"


def test_deep_compression_recipe_thins_prunes_shares_and_packs_exactly(tiny_built: Path):
    run_until(tiny_built, "tiny-cnn", "search")  # the package stage packs every artifact
    p = Project.at(tiny_built)
    summary = json.loads((p.data / "tiny-cnn" / "recipe.record.json").read_text())["summary"]
    mine = summary["recipes"][DC]
    assert set(summary["recipes"]) == {DC} and mine["storage_only"] and mine["from"] == "baseline"
    assert mine["steps"] == ["prune_channels", "finetune", "prune", "kmeans", "codebook"]
    steps = json.loads((p.stage_dir("tiny-cnn", "recipe") / DC / "steps.json").read_text())
    assert steps[0]["units"] == {
        "features.0": [4, 2], "features.3": [8, 4], "classifier.1": [16, 8], "classifier.3": [10, 10]
    }  # fmt: skip
    assert mine["parameters"] == (2 * 9 + 2) + (4 * 2 * 9 + 4) + (4 * 49 * 8 + 8) + (8 * 10 + 10)
    assert steps[2]["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert steps[3]["max_distinct_values"] <= 2**3 + 1
    # the one shared tensor of 1024+ weights (the hidden layer) is stored as 4-bit indices
    assert steps[4]["coded"] == 1 and steps[4]["index_bits"] == [4]
    graph = onnx.load(str(p.artifact("tiny-cnn", DC)))
    assert graph.graph.node[0].name.startswith(PREFIX)  # the artifact decodes its codebooks itself
    inits = {i.name: numpy_helper.to_array(i) for i in dense(graph).graph.initializer}
    fc = inits["classifier.1.weight"]
    assert fc.shape == (8, 4 * 49) and (fc == 0).mean() >= 0.55 and np.unique(fc).size <= 9
    size = p.artifact("tiny-cnn", DC).stat().st_size
    assert size < 0.3 * p.artifact("tiny-cnn", "baseline").stat().st_size
    assert size < dense(graph).ByteSize()  # the decode nodes cost less than the indices save
    assert p.artifact("tiny-cnn", DC) == p.stage_dir("tiny-cnn", "recipe") / DC / "model.onnx"

    stage("package").run("tiny-cnn", str(tiny_built))
    packages = json.loads((p.stage_dir("tiny-cnn", "package") / "package.json").read_text())
    assert packages[DC]["package_bytes"] < packages["prune"]["package_bytes"]
    rebuilt = rebuild(p.stage_dir("tiny-cnn", "package") / f"{DC}.mcpk", tiny_built / "rebuilt.onnx")
    feeds = p.kind("tiny-cnn").calibration(p, "tiny-cnn")[0]
    got = make_session(rebuilt).run(None, feeds)[0]
    assert np.array_equal(got, make_session(p.artifact("tiny-cnn", DC)).run(None, feeds)[0])


def test_drop_in_recipe_fuses_codes_the_table_below_4_bits_and_quantizes_matmuls(tiny_built: Path):
    summary = run_until(tiny_built, "tiny-text", "recipe")["summary"]["recipes"]["tiny-drop-in"]
    p = Project.at(tiny_built)
    steps = json.loads((p.stage_dir("tiny-text", "recipe") / "tiny-drop-in" / "steps.json").read_text())
    assert [s["step"] for s in steps] == ["fuse", "embed_lowbit", "int8"] and not summary["storage_only"]
    assert steps[0]["fused"]["Attention"] == 2 and steps[2]["quantized_nodes"] > 0
    table = steps[1]["tables"]["encoder.embeddings.word_embeddings.weight"]
    assert 2.4 < table["mean_bits"] <= 2.5 and table["bytes_after"] < table["bytes_before"] / 7
    ops = {n.op_type for n in onnx.load(str(p.artifact("tiny-text", "tiny-drop-in"))).graph.node}
    assert {"MatMulInteger", "Where", "Floor"} <= ops  # int8 MatMuls; the table decoded tier by tier
    assert "Mod" not in ops  # and split into codes without Mod (fmod per element is slow)
    ref, out = make_session(p.artifact("tiny-text", "baseline")), make_session(p.artifact("tiny-text", "tiny-drop-in"))
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
    params["recipes"]["tiny-thin"] = [
        {"step": "layer_drop", "keep": [1]},
        {"step": "prune_transformer", "heads": 0.5, "neurons": 0.5},
        {"step": "finetune", "steps": 4, "batch_size": 8, "lr": 0.001, "max_length": 16},
        {"step": "int8", "op_types": ["MatMul"]},
    ]
    params["models"]["tiny-text"]["recipe"] = "tiny-thin"
    (tiny_built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    summary = run_until(tiny_built, "tiny-text", "recipe")["summary"]["recipes"]["tiny-thin"]
    steps = json.loads(
        (Project.at(tiny_built).stage_dir("tiny-text", "recipe") / "tiny-thin" / "steps.json").read_text()
    )
    assert [s["step"] for s in steps] == ["layer_drop", "prune_transformer", "finetune", "int8"]
    assert steps[1]["kept_heads_neurons"] == {"layer.0": [1, 32]}  # 1 of 2 heads, 32 of 64 neurons
    assert steps[2]["loss_last"] > 0 and summary["parameters"] < steps[0]["parameters"]


def test_a_re_embed_recipe_starts_from_the_student_and_is_held_to_its_own_tolerance(tiny_built: Path):
    p = Project.at(tiny_built)
    summary = json.loads((p.data / "tiny-text" / "recipe.record.json").read_text())["summary"]["recipes"]
    assert list(summary) == ["tiny-drop-in", "tiny-re-embed"] and summary["tiny-re-embed"]["from"] == "distill"
    assert summary["tiny-re-embed"]["steps"] == ["fuse", "int8", "embed_lowbit"]
    student, mine = p.artifact("tiny-text", "distill"), p.artifact("tiny-text", "tiny-re-embed")
    assert mine.stat().st_size < student.stat().st_size / 2  # int8 layers and a 3-bit table
    ops = {n.op_type for n in onnx.load(str(mine)).graph.node}
    assert {"QAttention", "MatMulInteger", "Floor"} <= ops  # fused attention, then int8
    names = list(p.artifacts("tiny-text"))
    assert names.index("distill") < names.index("tiny-drop-in") < names.index("tiny-re-embed")

    validation = run_until(tiny_built, "tiny-text", "validate") and p.read_output(
        "tiny-text", "validate", "validation.json"
    )
    rows = {r["artifact"]: r for r in validation["rows"]}
    assert validation["tolerance"]["tiny-re-embed"] == {
        "lee_pearson": {"relative": 1.0},
        "polarity_accuracy": "interval",
    }
    row, base = rows["tiny-re-embed"], rows["baseline"]
    # held to its own tolerance: the cosine to fp32 (the entry's) is not among its limits
    assert set(row["allowed_drops"]) == {"lee_pearson", "polarity_accuracy"}
    assert set(rows["tiny-drop-in"]["allowed_drops"]) == {"lee_pearson", "polarity_accuracy", "cosine_to_fp32"}
    assert row["allowed_drops"]["lee_pearson"] == pytest.approx(abs(base["lee_pearson"]))
    iv = row["intervals"]["polarity_accuracy"]
    assert iv["low"] <= iv["estimate"] <= iv["high"] and iv["confidence"] == 0.95
    assert iv["estimate"] == pytest.approx(row["polarity_accuracy"] - base["polarity_accuracy"])
    # the polarity check passes exactly when the interval of (artifact - fp32) reaches 0
    polarity_ok = not any(r.startswith("polarity_accuracy") for r in row["reasons"])
    assert polarity_ok == (iv["high"] >= 0)
    assert set(row["intervals"]) == {"lee_pearson", "polarity_accuracy", "wordsim_spearman"}


def test_a_recipe_from_the_student_refuses_torch_steps(tiny_built: Path):
    params = yaml.safe_load((tiny_built / "params.yaml").read_text())
    params["recipes"]["tiny-re-embed"]["steps"].insert(0, {"step": "prune_transformer", "heads": 0.5})
    (tiny_built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ValueError, match=r"recipes.tiny-re-embed starts from distill's ONNX graph: torch steps"):
        stage("recipe").run("tiny-text", str(tiny_built))
