"""The Great Expectations suites around the pipeline: eval data, calibration pin, the
release table at publish. Each failure names the expectation and blocks what follows."""

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from model_compression.datasets import fashion_mnist as fm
from tasks.core.pipeline import stage
from tasks.core.project import Project
from tasks.gates import expectations as quality
from tasks.storage import s3 as s3io
from tests.conftest import _write_idx, run_until


def set_params(root: Path, **top: object) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(top)
    params["models"]["tiny-cnn"]["search"] = None  # the gates are under test, not the search
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_a_corrupted_eval_file_fails_the_data_suite(tiny_built: Path):
    set_params(tiny_built)
    run_until(tiny_built, "tiny-cnn", "package")
    fetch = Project.at(tiny_built).stage_dir("tiny-cnn", "fetch")
    _, y = fm.load_split(fetch, "test")
    y = y.copy()
    y[::7] = 200  # a label byte flipped in every seventh record: a class that does not exist
    _write_idx(fetch / fm.FILES["test_labels"], y)
    with pytest.raises(quality.QualityGateError, match=r"image-eval-data' failed: .*be_in_set\(label\)"):
        stage("validate").run("tiny-cnn", str(tiny_built))


def test_a_changed_calibration_set_fails_its_pin(tiny_built: Path):
    set_params(tiny_built, gates={"tiny-cnn": {"calibration_sha256": "0" * 64}})
    run_until(tiny_built, "tiny-cnn", "package")
    with pytest.raises(
        quality.QualityGateError,
        match=r"calibration-data' failed: expect_column_values_to_be_in_set\(calibration_sha256\)",
    ):
        stage("validate").run("tiny-cnn", str(tiny_built))


def test_the_calibration_hash_is_recorded_and_a_correct_pin_passes(tiny_built: Path):
    set_params(tiny_built)
    run_until(tiny_built, "tiny-cnn", "validate")
    p = Project.at(tiny_built)
    gates = {g["suite"]: g for g in p.read_output("tiny-cnn", "validate", "validation.json")["gates"]}
    digest = gates["calibration-data"]["calibration_sha256"]
    assert len(digest) == 64 and not gates["calibration-data"]["pinned"]
    set_params(tiny_built, gates={"tiny-cnn": {"calibration_sha256": digest}})
    stage("validate").run("tiny-cnn", str(tiny_built))
    gates = {g["suite"]: g for g in p.read_output("tiny-cnn", "validate", "validation.json")["gates"]}
    assert gates["calibration-data"]["pinned"] and gates["calibration-data"]["success"]


def test_a_size_budget_blocks_the_publish_and_names_the_expectation(tiny_built: Path):
    set_params(tiny_built, gates={"tiny-cnn": {"max_size_bytes": 1000}})
    run_until(tiny_built, "tiny-cnn", "benchmark")
    with pytest.raises(
        quality.QualityGateError, match=r"release-table' failed: expect_column_values_to_be_between\(size_bytes\)"
    ):
        stage("publish").run("tiny-cnn", str(tiny_built))
    p = Project.at(tiny_built)
    with s3io.available(p) as (s3, settings):
        assert s3io.list_keys(s3, settings, settings.publish_bucket, "tiny-cnn/") == []


def test_the_release_table_rejects_nan_inf_drops_and_norms():
    row = {"artifact": "quantize", "size_bytes": 10, "p50_ms": 1.0, "accuracy": 0.9, "accuracy_excess": -0.01}
    assert quality.check_release([row], ["accuracy"], ["accuracy"], {})["success"]
    with pytest.raises(quality.QualityGateError, match=r"be_between\(p50_ms\)"):
        quality.check_release([{**row, "p50_ms": math.inf}], ["accuracy"], ["accuracy"], {})
    with pytest.raises(quality.QualityGateError, match=r"release-table' failed: .*not_be_null\(accuracy\)"):
        quality.check_release([{**row, "accuracy": math.nan}], ["accuracy"], ["accuracy"], {})
    with pytest.raises(quality.QualityGateError, match=r"be_between\(accuracy_excess\)"):
        quality.check_release([{**row, "accuracy_excess": 0.03}], ["accuracy"], ["accuracy"], {})
    with pytest.raises(quality.QualityGateError, match=r"be_between\(embedding_norm_ratio\)"):
        quality.check_release([{**row, "embedding_norm_ratio": 0.5}], ["accuracy"], ["accuracy"], {})
    with pytest.raises(quality.QualityGateError, match=r"be_between\(p50_ms\)"):
        quality.check_release([row], ["accuracy"], ["accuracy"], {"max_p50_ms": 0.5})


def test_text_lengths_outside_the_expected_distribution_fail():
    texts = [f"a fine sentence about film number {i}, long enough to be a review" + "!" * i for i in range(30)]
    assert quality.check_text_eval_data(texts, [0, 1] * 15)["success"]
    with pytest.raises(quality.QualityGateError, match=r"median_to_be_between\(length\)"):
        quality.check_text_eval_data(["ok", "fine"] * 15, [0, 1] * 15)
    with pytest.raises(quality.QualityGateError, match=r"stdev_to_be_between\(length\)"):
        quality.check_text_eval_data([t[:40] for t in texts], [0, 1] * 15)  # all cut to one width


def test_calibration_feeds_hash_covers_values_shapes_and_names():
    a = [{"x": np.zeros((2, 3), np.float32)}]
    assert quality.feeds_sha256(a) == quality.feeds_sha256([{"x": np.zeros((2, 3), np.float32)}])
    assert quality.feeds_sha256(a) != quality.feeds_sha256([{"x": np.zeros((3, 2), np.float32)}])
    assert quality.feeds_sha256(a) != quality.feeds_sha256([{"y": np.zeros((2, 3), np.float32)}])
    assert quality.feeds_sha256(a) != quality.feeds_sha256([{"x": np.ones((2, 3), np.float32)}])
    with pytest.raises(quality.QualityGateError, match=r"be_in_set\(finite\)"):
        quality.check_calibration_data([{"x": np.full((2, 3), np.nan, np.float32)}], None)


def test_bad_gate_settings_are_named(tiny_project: Path):
    from tasks.gates.tolerance import model_gates

    set_params(tiny_project, gates={"tiny-cnn": {"max_bytes": 10}})
    with pytest.raises(ValueError, match=r"gates.tiny-cnn: unknown field\(s\) \['max_bytes'\]"):
        model_gates(Project.at(tiny_project), "tiny-cnn")
    set_params(tiny_project, gates={"tiny-cnn": {"max_p50_ms": -1}})
    with pytest.raises(ValueError, match=r"gates.tiny-cnn.max_p50_ms must be a positive number, got -1"):
        model_gates(Project.at(tiny_project), "tiny-cnn")


def test_a_suite_draws_no_progress_bar(capfd: pytest.CaptureFixture[str]):
    row = {"artifact": "quantize", "size_bytes": 10, "p50_ms": 1.0, "accuracy": 0.9, "accuracy_excess": -0.01}
    assert quality.check_release([row], ["accuracy"], ["accuracy"], {})["success"]
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in out + err  # GX's tqdm bars stay off the console
