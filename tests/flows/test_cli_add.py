"""``flows.cli add`` on a copy of the project's own params.yaml (its comments are documentation)."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from model_compression.hashing import sha256_tree

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def add(root: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["add", *args, "--root", str(root)], terminal_width=160)


def test_an_onnx_model_is_added_with_its_spec_read_from_the_model_and_planned(root: Path, byo_files):
    before = (root / "params.yaml").read_text()
    result = add(root, "digits", "--model", str(byo_files["onnx"]), "--eval", str(byo_files["data"]), "--std", "16")
    assert result.exit_code == 0, result.output
    after = (root / "params.yaml").read_text()
    old_line = "catalogue: [minilm, fashion-cnn]"
    assert after.startswith(before.replace(old_line, "catalogue: [minilm, fashion-cnn, digits]"))  # comments kept
    assert "# flows.cli add: the default for classification" in after
    params = yaml.safe_load(after)
    assert params["catalogue"] == ["minilm", "fashion-cnn", "digits"]
    assert params["models"]["digits"] == {
        "kind": "custom",
        "source": {"uri": str(byo_files["onnx"]), "sha256": sha256_tree(byo_files["onnx"])},
        "arch": {"input": {"name": "pixels", "shape": [64], "dtype": "float32", "std": 16.0}},
        "eval": {"task": "classification", "data": str(byo_files["data"]), "sha256": sha256_tree(byo_files["data"])},
        "tolerance": {"accuracy": 0.01},
    }
    out = result.output
    assert "pixels [64] float32, read from the model" in out
    assert "accuracy may drop by 0.01 against fp32 (the default for classification" in out
    assert "on 597 examples" in out
    assert "score, prune, quantize, factorize, bench as in params.yaml defaults:" in out
    assert "digits (custom)" in out and "will run" in out and "after upstream" in out  # the plan


def test_safetensors_take_their_factory_and_shape_from_flags(root: Path, byo_files):
    result = add(
        root, "team-mlp", "--model", str(byo_files["safetensors"]), "--eval", str(byo_files["data"]),
        "--factory", "team_models:mlp", "--factory-arg", "hidden=64", "--shape", "64", "--input-name", "pixels",
        "--std", "16", "--tolerance", "accuracy=0.02", "--tolerance", "top5_accuracy=1%",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    entry = yaml.safe_load((root / "params.yaml").read_text())["models"]["team-mlp"]
    assert entry["arch"] == {
        "input": {"name": "pixels", "shape": [64], "std": 16.0},
        "factory": "team_models:mlp",
        "factory_args": {"hidden": 64},
    }
    assert entry["tolerance"] == {"accuracy": 0.02, "top5_accuracy": {"relative": 0.01}}
    assert "accuracy may drop by 0.02, top5_accuracy may drop by 1.00% of its value against fp32 (given)" in (
        result.output
    )
    assert "team-mlp (custom)" in result.output


@pytest.fixture(scope="module")
def wrong(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("wrong")
    (folder / "notes.onnx").write_text("not a model\n")
    np.savez(folder / "wide.npz", x=np.zeros((20, 32), np.float32), y=np.zeros(20, np.int64))
    return {"text": folder / "notes.onnx", "wide": folder / "wide.npz", "gone": folder / "gone.onnx"}


ERRORS = {
    "wrong file": (["--model", "{text}"], r"corrupt ONNX model notes.onnx"),
    "no such file": (["--model", "{gone}"], r"--model .*gone.onnx: no such file or folder"),
    "unknown task": (["--task", "regression"], r"--task 'regression' is not a task; one of \['classification'"),
    "unknown metric": (["--tolerance", "acc=0.1"], r"unknown metric\(s\) \['acc'\]; known: \['accuracy'"),
    "bad tolerance": (["--tolerance", "accuracy"], r"--tolerance must be METRIC=DROP"),
    "shape mismatch": (["--eval", "{wide}"], r"examples have shape \[32\] \(32 values\) but InputSpec.shape is \[64\]"),
    "shape not the model's": (
        ["--shape", "8,8,1"],
        r"InputSpec.shape \[8, 8, 1\] \(plus a batch axis\) does not match",
    ),
    "taken name": (["--name", "minilm"], r"'minilm' is already in params.yaml"),
    "no factory": (["--model", "{safetensors}", "--shape", "64"], r"need the function .*: give --factory"),
    "no shape": (["--model", "{torchscript}"], r"a torchscript file does not record its input shape: give --shape"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_an_error_is_named_and_nothing_is_written(root: Path, byo_files, wrong, case: str):
    flags, message = ERRORS[case]
    given = dict(zip(flags[::2], [f.format(**byo_files, **wrong) for f in flags[1::2]], strict=True))
    name = given.pop("--name", "digits")
    args = {"--model": str(byo_files["onnx"]), "--eval": str(byo_files["data"]), **given}
    before = (root / "params.yaml").read_bytes()
    result = add(root, name, *[x for kv in args.items() for x in kv])
    assert result.exit_code == 1
    assert "error:" in result.output and "params.yaml unchanged" in result.output
    assert re.search(message, result.output), result.output
    assert (root / "params.yaml").read_bytes() == before
    assert sorted(p.name for p in root.iterdir()) == ["params.yaml"]
