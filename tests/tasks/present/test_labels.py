"""Artifact labels: a recipe's steps with their key settings, a technique with its own."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tasks.core.project import Project
from tasks.present.labels import absent, artifact_label, step_label


def test_step_labels_keep_the_settings_a_reader_needs():
    assert step_label({"step": "prune", "sparsity": 0.8, "scope": "global", "min_numel": 64}) == "prune 80 % global"
    assert step_label({"step": "finetune", "train": {"epochs": 2, "lr": 0.001}}) == "finetune 2 ep"
    assert step_label({"step": "embed_lowbit", "mean_bits": 2.25, "block_size": 128}) == "embed_lowbit 2.25 bits mean"
    assert step_label({"step": "embed_lowbit", "bits": 3, "decode": "table"}) == "embed_lowbit 3 bits decoded at load"
    assert step_label({"step": "int8", "op_types": ["MatMul", "Attention"]}) == "int8 MatMul/Attention"
    assert step_label({"step": "codebook"}) == "codebook"


PARAMS = {
    "recipes": {
        "thin": [{"step": "prune_channels", "amount": 0.5}, {"step": "finetune", "train": {"epochs": 1}},
                 {"step": "kmeans", "bits": 3, "min_numel": 64}, {"step": "codebook"}],
        "small": {"from": "distill", "steps": [{"step": "int8", "op_types": ["MatMul"]}]},
    },
    "models": {
        "cnn": {"kind": "image-classifier", "source": "s3://zoo/cnn", "tolerance": {"accuracy": 0.01},
                "prune": {"sparsity": 0.8, "scope": "global"}, "quantize": {"mode": "static", "per_channel": True},
                "factorize": {"energy": 0.9}, "distill": {"student": {"channels": [16, 32], "hidden": 64}},
                "recipe": ["thin", "small"]},
    },
}  # fmt: skip


def test_artifact_labels_from_params(tmp_path: Path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    p = Project.at(tmp_path)
    assert {s: artifact_label(p, "cnn", s) for s in p.artifact_names("cnn")} == {
        "baseline": "fp32 reference",
        "prune": "prune 80 % global",
        "quantize": "int8 static, per-channel",
        "factorize": "SVD 90 % energy",
        "distill": "student channels 16/32, hidden 64",
        "thin": "prune_channels 50 % → finetune 1 ep → kmeans 3 bits → codebook",
        "small": "student: int8 MatMul",
        "search": "search",  # no search.json yet
    }
    (tmp_path / "data/cnn/search").mkdir(parents=True)
    (tmp_path / "data/cnn/search/search.json").write_text(json.dumps({"best": {"recipe": "prune 0.5 + int8"}}))
    assert artifact_label(p, "cnn", "search") == "search: best trial prune 0.5 + int8"


def test_absent_artifacts_say_why(tmp_path: Path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    p = Project.at(tmp_path)
    (tmp_path / "data/cnn/search").mkdir(parents=True)
    (tmp_path / "data/cnn/factorize.record.json").write_text(json.dumps({"summary": {"skipped": "not requested"}}))
    miss = {"trial": 2, "recipe": "int8", "missed": ["accuracy dropped 0.02 > tolerance 0.01 (missed by 0.01)"]}
    found = {"best": None, "completed": 3, "planned": 4, "nearest_miss": miss}
    (tmp_path / "data/cnn/search/search.json").write_text(json.dumps(found))
    present = {"baseline", "prune", "quantize", "distill", "thin", "small"}
    assert absent(p, "cnn", present) == {
        "factorize": "skipped: not requested",
        "search": "no trial passed (3 of 4 run); nearest miss: trial 2 (int8): accuracy dropped 0.02 > tolerance 0.01 "
        "(missed by 0.01)",
    }
