"""Bring your own model: each input kind, as a catalogue entry only, through the stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from model_compression.hashing import sha256_tree
from tasks.core.pipeline import stage
from tasks.core.project import Project
from tests.byo.sources import entry
from tests.conftest import make_project

UP_TO_VALIDATE = (
    "zoo", "fetch", "baseline", "score", "prune", "quantize", "factorize", "distill", "recipe", "search", "package",
    "validate"
)  # fmt: skip


REPO_DEFAULTS = yaml.safe_load((Path(__file__).resolve().parents[3] / "params.yaml").read_text())["defaults"]


def _project(root: Path, models: dict[str, dict], defaults: dict | None = None) -> Path:
    """A project of custom models; its S3 endpoint answers nothing (local files only)."""
    return make_project(
        root,
        {
            "defaults": defaults or {},
            "seed": 0,
            "threads": 1,
            "pools": {"local": {"work_pool": None, "preset": "avx2", "publish_slower_int8": True}},
            "catalogue": list(models),
            "s3": {
                "endpoint_url": "http://127.0.0.1:9",
                "region": "us-east-1",
                "zoo_bucket": "z",
                "publish_bucket": "p",
                "dvc_bucket": "d",
            },
            "models": models,
        },
    )


def _baseline_fails(root: Path, e: dict, error: str) -> None:
    """``e`` fetches fine, and its baseline stage fails with ``error`` leaving nothing behind."""
    root = _project(root, {"digits": e})
    _run(root, "digits", ("zoo", "fetch"))
    with pytest.raises(ValueError, match=error):
        stage("baseline").run("digits", root)
    assert not (root / "data/digits/baseline").exists() and not list((root / "data/digits").glob("baseline.partial*"))


def _run(root: Path, model: str, stages: tuple[str, ...] = UP_TO_VALIDATE) -> dict[str, dict]:
    return {s: stage(s).run(model, root)["summary"] for s in stages}


@pytest.mark.parametrize("fmt", ["onnx", "safetensors", "torchscript", "pt2"])
def test_each_input_kind_is_compressed_from_its_catalogue_entry(tmp_path: Path, byo_files, fmt: str):
    root = _project(tmp_path / "p", {"digits": entry(byo_files, fmt)})
    out = _run(root, "digits")
    assert out["baseline"]["format"] == fmt and out["baseline"]["n"] == 597
    assert out["prune"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert out["quantize"]["quantized_nodes"] >= 3 and out["quantize"]["calibration_batches"] == 5
    assert out["factorize"]["layers_factorized"] >= 1
    if fmt == "safetensors":  # torch techniques on the factory's module, and a student
        assert out["distill"]["parameters"] < out["distill"]["teacher_parameters"] / 2
        assert "on" not in out["prune"]
    else:  # ONNX-graph techniques; no factory, so no student
        assert out["prune"]["on"] == out["factorize"]["on"] == "onnx graph"
        assert "student architecture" in out["distill"]["skipped"]
    p = Project.at(root)
    skipped = {"recipe": out["recipe"]["skipped"], "search": out["search"]["skipped"]}
    assert "recipes run on the catalogue kinds" in skipped["recipe"] and "not requested" in skipped["search"]
    if fmt != "safetensors":
        skipped["distill"] = out["distill"]["skipped"]
    assert p.skipped("digits") == skipped
    rows = {r["artifact"]: r for r in p.read_output("digits", "validate", "validation.json")["rows"]}
    assert rows["baseline"]["accuracy"] > 0.93 and rows["baseline"]["top3_accuracy"] > rows["baseline"]["accuracy"]
    assert rows["quantize"]["passed"] and rows["quantize"]["accuracy_drop"] <= 0.02
    assert rows["quantize"]["agreement_to_fp32"] > 0.97
    assert rows["quantize"]["size_bytes"] < rows["baseline"]["size_bytes"]
    assert set(rows) == {"baseline", "prune", "quantize", "factorize"} | (
        {"distill"} if fmt == "safetensors" else set()
    )


def test_calibration_is_split_off_and_never_evaluated(tmp_path: Path, byo_files):
    root = _project(tmp_path / "p", {"digits": entry(byo_files, "onnx")})
    _run(root, "digits", ("zoo", "fetch", "baseline"))
    split = json.loads((root / "data/digits/baseline/split.json").read_text())
    ev, cal = set(split["eval"]), set(split["calibration"])
    assert not ev & cal and len(ev | cal) == split["n"] == 597 and len(cal) == 149
    record = json.loads((root / "data/digits/baseline.record.json").read_text())
    assert record["summary"]["sha256"] == split["sha256"]  # the split is part of the record


def test_agreement_without_data_draws_from_the_input_spec_and_says_so(tmp_path: Path, byo_files):
    e = entry(
        byo_files, "onnx", eval={"task": "agreement", "samples": 64, "top_k": 3}, tolerance={"top1_agreement": 0.1}
    )
    root = _project(tmp_path / "p", {"digits": e})
    out = _run(root, "digits")
    assert out["baseline"]["synthetic"] is True
    rows = {r["artifact"]: r for r in Project.at(root).read_output("digits", "validate", "validation.json")["rows"]}
    assert rows["baseline"]["top1_agreement"] == 1.0 and rows["baseline"]["kl_to_fp32"] == pytest.approx(0, abs=1e-9)
    assert 0.5 < rows["quantize"]["top1_agreement"] <= 1.0 and 0 < rows["quantize"]["kl_to_fp32"] < 0.1

    from tasks.present import html_report

    page = html_report.render(Project.at(root), "digits", {}, "local", tmp_path / "r", [])
    assert "No evaluation data" in page.read_text() and "shapes and numerics only" in page.read_text()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"input": {"name": "image", "shape": [64], "std": 16.0}}, "InputSpec.name is 'image'"),
        (
            {"input": {"name": "pixels", "shape": [8, 9], "std": 16.0}},
            r"examples have shape \[64\].*InputSpec.shape is \[8, 9\]",
        ),
        ({"input": {"name": "pixels", "shape": [64], "dtype": "int64"}}, "InputSpec.dtype is int64"),
    ],
)
def test_a_spec_that_does_not_match_the_model_fails_before_any_compute(tmp_path: Path, byo_files, change, error):
    e = entry(byo_files, "onnx")
    e["arch"] = {**e["arch"], **change}
    _baseline_fails(tmp_path / "p", e, error)


def test_a_torch_model_that_rejects_the_declared_shape_is_named(tmp_path: Path, byo_files):
    e = entry(byo_files, "torchscript")
    e["arch"] = {**e["arch"], "input": {"name": "pixels", "shape": [63], "std": 16.0}}
    _baseline_fails(tmp_path / "p", e, r"examples have shape \[64\].*InputSpec.shape is \[63\]")


def test_checksum_mismatch_corrupt_file_and_nan_weights_are_named(tmp_path: Path, byo_files):
    e = entry(byo_files, "onnx")
    e["source"] = {**e["source"], "sha256": "0" * 64}
    root = _project(tmp_path / "a", {"digits": e})
    stage("zoo").run("digits", root)
    with pytest.raises(ValueError, match=r"checksum mismatch for digits model"):
        stage("fetch").run("digits", root)

    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(byo_files["onnx"].read_bytes()[:500])
    e = entry(byo_files, "onnx", source={"uri": str(bad), "sha256": sha256_tree(bad)})
    _baseline_fails(tmp_path / "b", e, r"corrupt ONNX model")

    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(byo_files["safetensors"])
    state["2.weight"] = state["2.weight"].clone()
    state["2.weight"][0, 0] = torch.nan
    nan = tmp_path / "nan.safetensors"
    save_file(state, nan)
    e = entry(byo_files, "safetensors", source={"uri": str(nan), "sha256": sha256_tree(nan)})
    _baseline_fails(tmp_path / "c", e, r"weight '2.weight' in model.safetensors contains NaN")


def test_a_corrupted_eval_file_fails_with_its_name(tmp_path: Path, byo_files):
    data = tmp_path / "broken.npz"
    data.write_bytes(byo_files["data"].read_bytes()[:300])
    e = entry(byo_files, "onnx")
    e["eval"] = {**e["eval"], "data": str(data), "sha256": sha256_tree(data)}
    _baseline_fails(tmp_path / "p", e, r"corrupt eval data data.npz")


def test_missing_labels_and_an_unknown_tolerance_metric_are_named(tmp_path: Path, byo_files):
    unlabelled = tmp_path / "x_only.npz"
    with np.load(byo_files["data"]) as z:
        np.savez(unlabelled, x=z["x"])
    e = entry(byo_files, "onnx", tolerance={"f1": 0.1})
    root = _project(tmp_path / "p", {"digits": e})
    with pytest.raises(ValueError, match=r"digits.tolerance: unknown metric\(s\) \['f1'\]"):
        _run(root, "digits")
    e = entry(byo_files, "onnx")
    e["eval"] = {**e["eval"], "data": str(unlabelled), "sha256": sha256_tree(unlabelled)}
    root = _project(tmp_path / "q", {"digits": e})
    with pytest.raises(ValueError, match=r"classification needs labels"):
        _run(root, "digits")


def test_a_text_encoder_onnx_is_scored_on_similarity_pairs_and_a_probe(tmp_path: Path, tiny_bert_dir: Path):
    """A text-embedding entry: the team's encoder as ONNX, WordSim-353 pairs and labelled
    sentences as CSV, the tokenizer folder declared in the input spec."""
    import pandas as pd
    from gensim.test.utils import datapath

    from model_compression.datasets import text as text_data
    from model_compression.kinds import text_encoder

    model, tok = text_encoder.load(tiny_bert_dir)
    onnx_path = text_encoder.export(model, tok, tmp_path / "encoder.onnx")
    pairs = pd.read_csv(
        datapath("wordsim353.tsv"), sep="\t", comment="#", header=None, names=["text1", "text2", "score"]
    )
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    pol = text_data.load_polarity()
    pd.DataFrame({"text": pol.texts[:200], "label": pol.labels[:200]}).to_csv(tmp_path / "probe.csv", index=False)
    e = {
        "kind": "custom",
        "source": {"uri": str(onnx_path), "sha256": sha256_tree(onnx_path)},
        "seed": None,
        "arch": {"input": {"tokenizer": str(tiny_bert_dir), "max_length": 16}},
        "train": None,
        "eval": {
            "task": "text-embedding",
            "data": str(tmp_path / "pairs.csv"),
            "sha256": sha256_tree(tmp_path / "pairs.csv"),
            "probe": str(tmp_path / "probe.csv"),
            "probe_sha256": sha256_tree(tmp_path / "probe.csv"),
            "calibration_split": 0.1,
            "folds": 3,
        },
        "tolerance": {"cosine_to_fp32": 0.2},
        "score": None,
        "prune": None,
        "quantize": {"mode": "static", "per_channel": True},
        "factorize": None,
        "distill": {"student_args": {"layers": 1}},
        "recipe": None,
        "search": None,
        "bench": {"batch_sizes": [1], "seq_len": 16, "warmup": 2, "runs": 5},
    }
    root = _project(tmp_path / "p", {"encoder": e})
    out = _run(root, "encoder")
    assert out["baseline"]["format"] == "onnx" and out["baseline"]["n"] == len(pairs) == 353
    assert out["quantize"]["calibration_batches"] == out["baseline"]["calibration_examples"] * 2  # both texts of a pair
    assert out["prune"]["skipped"].startswith("not requested")
    assert "student architecture" in out["distill"]["skipped"]
    rows = {r["artifact"]: r for r in Project.at(root).read_output("encoder", "validate", "validation.json")["rows"]}
    assert set(rows) == {"baseline", "quantize"}
    assert -1 <= rows["baseline"]["pairs_spearman"] <= 1 and 0.4 <= rows["baseline"]["probe_accuracy"] <= 1
    assert rows["baseline"]["cosine_to_fp32"] == pytest.approx(1.0)
    assert 0.8 < rows["quantize"]["cosine_to_fp32"] < 1.0


def test_a_technique_that_cannot_apply_is_skipped_with_its_reason(tmp_path: Path, byo_files):
    e = entry(byo_files, "onnx", prune={"sparsity": 0.5, "min_numel": 10**6})
    root = _project(tmp_path / "p", {"digits": e})
    out = _run(root, "digits")
    assert out["prune"] == {
        "skipped": "no prunable weights in model.onnx: no MatMul/Gemm/Conv weight with >= 1000000 elements"
    }
    assert not (root / "data/digits/prune/model.onnx").exists()
    assert out["validate"]["passed"] == ["quantize", "factorize"]
    assert set(Project.at(root).skipped("digits")) == {"prune", "distill", "recipe", "search"}


def test_a_text_encoder_with_a_probe_file_only_is_split_and_probed(tmp_path: Path, tiny_bert_dir: Path):
    import pandas as pd

    from model_compression.datasets import text as text_data
    from model_compression.kinds import text_encoder

    model, tok = text_encoder.load(tiny_bert_dir)
    onnx_path = text_encoder.export(model, tok, tmp_path / "encoder.onnx")
    pol = text_data.load_polarity()
    pd.DataFrame({"text": pol.texts, "label": pol.labels}).to_csv(tmp_path / "probe.csv", index=False)
    e = entry({"onnx": onnx_path, "data": tmp_path / "probe.csv"}, "onnx", tolerance={"probe_accuracy": 1.0})
    e["arch"] = {"input": {"tokenizer": str(tiny_bert_dir), "max_length": 16}}
    probe = tmp_path / "probe.csv"
    e["eval"] = {"task": "text-embedding", "probe": str(probe), "probe_sha256": sha256_tree(probe)}
    e["eval"].update(calibration_split=0.25, folds=3)
    e.update(prune=None, factorize=None, distill=None, quantize={"mode": "dynamic", "per_channel": True})
    root = _project(tmp_path / "p", {"encoder": e})
    out = _run(root, "encoder")
    assert out["baseline"]["n"] == len(pol.texts) == 200 and out["baseline"]["calibration_examples"] == 50
    rows = {r["artifact"]: r for r in Project.at(root).read_output("encoder", "validate", "validation.json")["rows"]}
    assert "pairs_spearman" not in rows["baseline"] and 0.4 <= rows["baseline"]["probe_accuracy"] <= 1.0
    assert 0.8 < rows["quantize"]["cosine_to_fp32"] < 1.0


def test_an_image_folder_on_s3_is_fetched_whole_and_checked(tmp_path: Path, byo_files, s3_server):
    import pandas as pd
    from PIL import Image

    from tasks.storage import s3 as s3io

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
    pd.DataFrame({"file": [f"{i}.png" for i in range(3)], "label": [0, 1, 2]}).to_csv(
        folder / "labels.csv", index=False
    )
    e = entry(byo_files, "onnx")
    e["eval"] = {**e["eval"], "data": "s3://byo-imgs/team/imgs/", "sha256": sha256_tree(folder)}
    root = make_project(
        tmp_path / "p",
        {"seed": 0, "threads": 1, "catalogue": ["digits"], "models": {"digits": e},
         "s3": {"endpoint_url": s3_server.endpoint_url, "region": "us-east-1", "zoo_bucket": "byo-imgs",
                "publish_bucket": "byo-pub", "dvc_bucket": "byo-dvc"}},
    )  # fmt: skip
    st = s3io.S3Settings.from_project(Project.at(root))
    client = s3io.client(st)
    s3io.ensure_buckets(client, st, st.buckets)
    for f in sorted(folder.iterdir()):
        client.upload_file(str(f), "byo-imgs", f"team/imgs/{f.name}")
    out = _run(root, "digits", ("zoo", "fetch"))
    assert out["fetch"]["files"]["data"] == {"uri": "s3://byo-imgs/team/imgs/", "sha256": sha256_tree(folder)}
    assert sha256_tree(root / "data/digits/fetch/eval/data") == sha256_tree(folder)
    client.upload_file(str(folder / "0.png"), "byo-imgs", "team/imgs/extra.png")  # the folder changed upstream
    shutil.rmtree(root / "data/digits/fetch")  # a fresh machine fetches again
    with pytest.raises(ValueError, match=r"checksum mismatch for digits data s3://byo-imgs/team/imgs/"):
        stage("fetch").run("digits", root)


def test_malformed_entries_are_named(tmp_path: Path, byo_files):
    e = entry(byo_files, "onnx")
    del e["tolerance"]
    with pytest.raises(ValueError, match=r"models.digits lacks \['tolerance'\]: every entry names its kind"):
        Project.at(_project(tmp_path / "a", {"digits": e})).entry("digits")
    e = entry(byo_files, "onnx", benchmark={"runs": 5})
    with pytest.raises(ValueError, match=r"models.digits: unknown key\(s\) \['benchmark'\]"):
        Project.at(_project(tmp_path / "a2", {"digits": e})).entry("digits")
    e = entry(byo_files, "onnx")
    e["arch"] = {**e["arch"], "format": "tflite"}
    with pytest.raises(ValueError, match=r"arch.format must be one of"):  # before anything is fetched
        stage("zoo").run("digits", _project(tmp_path / "a3", {"digits": e}))
    e = entry(byo_files, "onnx", source=str(byo_files["onnx"]))
    with pytest.raises(ValueError, match=r"digits.source must be \{uri: <path or s3://...>, sha256: <hex>\}"):
        stage("zoo").run("digits", _project(tmp_path / "b", {"digits": e}))
    e = entry(byo_files, "onnx")
    e["arch"] = {**e["arch"], "factory": "team_models:mlp"}
    _baseline_fails(tmp_path / "c", e, r"digits.arch.factory applies to safetensors weights only; model.onnx is onnx")
    e = entry(byo_files, "safetensors")
    e["arch"] = {k: v for k, v in e["arch"].items() if k not in ("factory", "factory_args")}
    _baseline_fails(tmp_path / "d", e, r"digits.arch.factory is required for safetensors weights")


def test_a_minimal_entry_runs_what_needs_nothing_more_and_says_why_the_rest_did_not(tmp_path: Path, byo_files):
    full = entry(byo_files, "onnx")
    minimal = {k: full[k] for k in ("kind", "source", "eval", "tolerance")}
    minimal["arch"] = {"input": full["arch"]["input"]}  # the format comes from the file's suffix
    root = _project(tmp_path / "p", {"digits": minimal}, defaults=REPO_DEFAULTS)
    out = _run(root, "digits")
    assert REPO_DEFAULTS["prune"]["sparsity"] <= out["prune"]["sparsity"] < 0.7  # sensitivity-allocated, >= target
    assert out["prune"]["sparsity_by_layer"]
    assert out["quantize"]["mode"] == REPO_DEFAULTS["quantize"]["mode"] and out["factorize"]["layers_factorized"] >= 1
    assert "student architecture" in out["distill"]["skipped"]
    assert out["search"]["skipped"] == "not requested (defaults.search is null in params.yaml)"
    rows = {r["artifact"]: r for r in Project.at(root).read_output("digits", "validate", "validation.json")["rows"]}
    assert set(rows) == {"baseline", "prune", "quantize", "factorize"} and rows["quantize"]["passed"]
    record = json.loads((root / "data/digits/prune.record.json").read_text())
    assert record["params"]["model.prune"] == REPO_DEFAULTS["prune"]
