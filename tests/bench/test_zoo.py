"""The zoo's architectures, ONNX exports and eval files, on the tiny zoo (real Fashion-MNIST)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from onnx import numpy_helper

from bench.zoo import build
from bench.zoo import export as zx
from bench.zoo.models import gru, mobilenet, vit
from model_compression.byo import data as byo_data
from model_compression.byo.evaluate import run_tensor
from model_compression.byo.load import check_onnx_inputs
from model_compression.byo.spec import EvalSpec, ModelSpec, format_of
from model_compression.config import from_dict
from model_compression.datasets import fashion_mnist as fm
from model_compression.hashing import sha256_tree
from tests.byo.zoo import DEAD_CHANNEL, FMNIST, build_tiny_zoo, conv_reading, dead_kernel

NAMES = ("zoo-mobilenet", "zoo-vit", "zoo-gru")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return build_tiny_zoo(tmp_path_factory.mktemp("tiny-zoo"))


def _graph(path: Path) -> onnx.GraphProto:
    return onnx.load(str(path)).graph


def _inits(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def _params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_size_parameter_counts_match_the_docstrings() -> None:
    assert (_params(mobilenet()), _params(vit()), _params(gru())) == (542_474, 539_914, 161_034)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_model_is_tiny_and_learned_from_real_data(tiny: dict[str, dict[str, Any]], name: str) -> None:
    m = tiny[name]
    assert 1_000 <= _params(m["module"]) <= 4_000
    with np.load(m["eval"]) as z:
        x, y = z["x"], z["y"]
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.shape == (200, *m["input_shape"])
    images, labels = fm.load_split(FMNIST, "test")
    np.testing.assert_array_equal(y, labels[:200])
    np.testing.assert_array_equal(x.reshape(200, 1, 28, 28), fm.normalize(images[:200]))  # normalised as trained
    # 32 steps on 1,024 images: well above chance (0.1), far below the full models
    assert 0.3 < zx.accuracy(zx.onnx_logits(m["onnx"], x), y) < 0.9


@pytest.mark.parametrize("name", NAMES)
def test_onnx_matches_torch_at_any_batch(tiny: dict[str, dict[str, Any]], name: str) -> None:
    m = tiny[name]
    with np.load(m["eval"]) as z:
        x = z["x"]
    graph = _graph(m["onnx"])
    assert [i.name for i in graph.input] == ["pixels"] and [o.name for o in graph.output] == ["logits"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for n in (1, 7, 200):  # exported with a batch of 2
        assert zx.max_abs_diff(m["module"], m["onnx"], x[:n]) < 1e-4
        assert zx.onnx_logits(m["onnx"], x[:n]).shape == (n, 10)


def test_dead_channel_is_all_zero_in_the_exported_initializer(tiny: dict[str, dict[str, Any]]) -> None:
    dead = tiny["zoo-mobilenet"]["dead_channel"]
    path = tiny["zoo-mobilenet"]["onnx"]
    assert dead == {"conv": "/blocks/blocks.1/dw/Conv", "weight": "blocks.1.dw.weight", "channel": DEAD_CHANNEL}
    graph, inits = _graph(path), _inits(_graph(path))
    w = inits[dead["weight"]]
    assert w.shape == (16, 1, 3, 3)
    assert not dead_kernel(path, dead["weight"], DEAD_CHANNEL).any()
    alive = np.delete(w, DEAD_CHANNEL, axis=0).reshape(15, -1)
    assert np.abs(alive).sum(axis=1).min() > 0  # the only dead channel
    conv = next(n for n in graph.node if n.name == dead["conv"])
    assert next(a.i for a in conv.attribute if a.name == "group") == 16
    # the BatchNorm reading the conv folds the channel to a zero kernel and a zero bias
    bn = next(n for n in graph.node if n.op_type == "BatchNormalization" and n.input[0] == conv.output[0])
    gamma, beta, mean, var = (inits[i] for i in bn.input[1:])
    eps = next(a.f for a in bn.attribute if a.name == "epsilon")
    scale = gamma / np.sqrt(var + eps)
    assert scale[DEAD_CHANNEL] == 0 and beta[DEAD_CHANNEL] - mean[DEAD_CHANNEL] * scale[DEAD_CHANNEL] == 0
    assert np.count_nonzero(scale) == 15


def test_conv_reading_names_a_missing_weight(tiny: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match=r"no Conv node in model.onnx takes 'blocks.9.dw.weight'"):
        conv_reading(tiny["zoo-mobilenet"]["onnx"], "blocks.9.dw.weight")


def test_mobilenet_is_depthwise_separable_with_batchnorm_unfolded(tiny: dict[str, dict[str, Any]]) -> None:
    graph = _graph(tiny["zoo-mobilenet"]["onnx"])
    inits = _inits(graph)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    depthwise = []
    for n in convs:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        w = inits[n.input[1]]
        if group > 1:
            assert group == w.shape[0] and w.shape[1:] == (1, 3, 3)  # one 3x3 kernel per channel
            depthwise.append(n.input[1])
    assert depthwise == ["blocks.0.dw.weight", "blocks.1.dw.weight"]
    assert [inits[n.input[1]].shape[2:] for n in convs].count((1, 1)) == 2  # the pointwise convs
    ops = [n.op_type for n in graph.node]
    assert ops.count("BatchNormalization") == len(convs) == 5  # stem + 2 blocks x 2, none folded
    assert {"ReduceMean", "Gemm"} <= set(ops)


def test_vit_has_attention_matmuls_and_softmax(tiny: dict[str, dict[str, Any]]) -> None:
    ops = [n.op_type for n in _graph(tiny["zoo-vit"]["onnx"]).node]
    assert ops.count("Softmax") == 1  # one layer
    assert ops.count("MatMul") >= 6  # embed, qkv, q@k, w@v, proj, 2 MLP
    assert ops.count("LayerNormalization") == 3
    assert "Conv" not in ops and "Shape" not in ops  # patches by constant reshapes


def test_gru_model_is_a_gru_node(tiny: dict[str, dict[str, Any]]) -> None:
    graph = _graph(tiny["zoo-gru"]["onnx"])
    grus = [n for n in graph.node if n.op_type == "GRU"]
    assert len(grus) == 1
    assert {a.name: a.i for a in grus[0].attribute if a.type == onnx.AttributeProto.INT}["hidden_size"] == 16
    assert _inits(graph)[grus[0].input[1]].shape == (1, 48, 28)  # 3 gates x 16, 28 pixels a row


@pytest.mark.parametrize("name", NAMES)
def test_catalogue_entry_is_a_valid_custom_entry(tiny: dict[str, dict[str, Any]], name: str) -> None:
    m = tiny[name]
    row = {
        "name": name,
        "input_shape": list(m["input_shape"]),
        "model": str(m["onnx"]),
        "model_sha256": sha256_tree(m["onnx"]),
        "eval": str(m["eval"]),
        "eval_sha256": sha256_tree(m["eval"]),
    }
    entry = yaml.safe_load(build.catalogue_entry(row))[name]
    assert entry["kind"] == "custom" and entry["tolerance"] == {"accuracy": 0.01}
    assert entry["source"] == {"uri": str(m["onnx"]), "sha256": row["model_sha256"]}
    arch, ev = from_dict(ModelSpec, entry["arch"], "arch"), from_dict(EvalSpec, entry["eval"], "eval")
    assert format_of(entry["source"]["uri"], arch.format) == "onnx"
    assert (arch.input.mean, arch.input.std, ev.calibration_split) == (0.0, 1.0, 0.2)
    check_onnx_inputs(m["onnx"], arch.input)
    # the pipeline's own reader feeds the model what the eval file holds, unchanged
    examples = byo_data.preprocess(byo_data.read_raw(Path(ev.data or ""), arch.input), arch.input, name)
    with np.load(m["eval"]) as z:
        x = z["x"]
    np.testing.assert_array_equal(examples.x, x)
    logits = run_tensor(m["onnx"], arch.input, x, 1, ev.batch_size)
    np.testing.assert_allclose(logits, zx.torch_logits(m["module"], x), atol=1e-4)


def test_eval_file_bytes_are_repeatable(tmp_path: Path) -> None:
    x, y = np.arange(12, dtype=np.float32).reshape(3, 4), np.array([0, 1, 2])
    a, b = zx.write_eval(tmp_path / "a.npz", x, y), zx.write_eval(tmp_path / "b.npz", x, y)
    assert a.read_bytes() == b.read_bytes()
    with np.load(a) as z:
        assert z["y"].dtype == np.int64 and np.array_equal(z["x"], x)


def test_factories_reject_impossible_shapes() -> None:
    with pytest.raises(ValueError, match="patch must divide 28, got 5"):
        vit(patch=5)
    with pytest.raises(ValueError, match="dim must be a multiple of heads, got dim=18, heads=4"):
        vit(dim=18, heads=4)


def test_build_rejects_negative_epochs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build.main([str(tmp_path), "--epochs", "-1"])
    assert "--epochs must be >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "zoo.json").exists()


def test_same_seed_gives_the_same_files(tiny: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    again = build_tiny_zoo(tmp_path)
    for name in NAMES:
        for part in ("onnx", "eval"):
            assert sha256_tree(again[name][part]) == sha256_tree(tiny[name][part]), (name, part)
