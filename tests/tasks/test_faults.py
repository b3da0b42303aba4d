"""The bad-input and fault matrix rows not covered beside their modules (docs/reliability.md)."""

import errno
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from model_compression import onnx_export
from model_compression.datasets import text as text_data
from model_compression.runtime.session import check_inputs, make_session
from model_compression.score.weights import ScoreConfig
from tasks.core.pipeline import stage
from tasks.core.stage import DiskFullError
from tasks.gates import expectations as quality
from tests.conftest import make_project, tiny_params


def test_wrong_input_shape_fails_before_compute(tmp_path: Path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    path = onnx_export.export(
        model, {"image": torch.zeros(2, 1, 28, 28)}, tmp_path / "m.onnx", "logits", {"image": {0: "b"}}
    )
    session = make_session(path)
    with pytest.raises(
        ValueError, match=r"input 'image': model expects shape \['b', 1, 28, 28\], eval spec gives \[4, 28, 28\]"
    ):
        check_inputs(session, {"image": np.zeros((4, 28, 28), np.float32)})
    with pytest.raises(ValueError, match=r"model inputs are \['image'\], eval spec gives \['pixels'\]"):
        check_inputs(session, {"pixels": np.zeros((4, 1, 28, 28), np.float32)})


def test_empty_and_missing_datasets_are_named(tmp_path: Path):
    (tmp_path / "empty.cor").write_text("\n\n")
    with pytest.raises(ValueError, match="dataset file is empty"):
        text_data.load_polarity(tmp_path / "empty.cor")
    with pytest.raises(FileNotFoundError, match="dataset file missing"):
        text_data.load_polarity(tmp_path / "absent.cor")


def test_schema_drift_in_eval_data_is_caught(tmp_path: Path):
    (tmp_path / "drift.cor").write_text("__label__pos a fine film\npositive\ta tab-separated line\n")
    with pytest.raises(ValueError, match="polarity line without a __label__pos/neg tag"):
        text_data.load_polarity(tmp_path / "drift.cor")
    texts = ["good", "bad"] * 15 + [""]
    labels = [1, 0] * 15 + [2]
    with pytest.raises(quality.QualityGateError, match=r"text-eval-data' failed: .*length.*label"):
        quality.check_text_eval_data(texts, labels)


def test_nan_in_the_metrics_table_fails_the_gate():
    rows = [
        {"artifact": "baseline", "size_bytes": 10, "accuracy": 0.9},
        {"artifact": "quantize", "size_bytes": 4, "accuracy": float("nan")},
    ]
    with pytest.raises(quality.QualityGateError, match=r"metrics-table' failed: .*not_be_null\(accuracy\)"):
        quality.check_metrics(rows, ["accuracy"])
    rows[1]["accuracy"] = float("inf")
    with pytest.raises(quality.QualityGateError, match=r"be_between\(accuracy\)"):
        quality.check_metrics(rows, ["accuracy"])


def test_unsupported_bits_are_rejected():
    with pytest.raises(ValueError, match=r"ScoreConfig.bits must be in \[2, 16\], got 1"):
        ScoreConfig(bits=1)


def test_empty_seed_is_refused(tiny_project: Path, tmp_path: Path):
    import yaml

    empty = tmp_path / "empty-seed"
    empty.mkdir()
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["models"]["tiny-cnn"]["seed"] = f"file://{empty}"
    params["models"]["tiny-cnn"]["source"] = params["models"]["tiny-cnn"]["source"] + "-empty"
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ValueError, match="holds no files"):
        stage("zoo").run("tiny-cnn", str(tiny_project))


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_is_named_and_leaves_no_partial_output(small_disk: Path, s3_server, tiny_bert_dir, tiny_fmnist_dir):
    root = make_project(
        small_disk / "project", tiny_params(s3_server.endpoint_url, tiny_bert_dir, tiny_fmnist_dir, "diskfull")
    )
    stage("zoo").run("tiny-cnn", str(root))
    with pytest.raises(DiskFullError, match=r"disk full while writing .*fetch: no space left on device") as info:
        stage("fetch").run("tiny-cnn", str(root))
    assert info.value.errno == errno.ENOSPC
    assert not (root / "data" / "tiny-cnn" / "fetch").exists()
    assert not list((root / "data" / "tiny-cnn").glob("fetch.partial*"))
    shutil.rmtree(root / "data")


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/pickle-exploit-ran"),))


def test_pickle_disguised_as_safetensors_is_refused_without_running(tiny_project: Path):
    import pickle

    from tests.conftest import run_until

    marker = Path("/tmp/pickle-exploit-ran")
    marker.unlink(missing_ok=True)
    run_until(tiny_project, "tiny-cnn", "baseline")
    weights = tiny_project / "data" / "tiny-cnn" / "baseline" / "model.safetensors"
    weights.write_bytes(pickle.dumps({"w": _Exploit()}))
    with pytest.raises(ValueError, match="corrupt CNN checkpoint"):
        stage("prune").run("tiny-cnn", str(tiny_project))
    assert not marker.exists()
