"""Pruning and SVD factorization on an ONNX graph (models that arrive as ONNX only)."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from model_compression.errors import NotApplicable
from model_compression.factorize.onnx_svd import factorize_onnx
from model_compression.factorize.svd import SVDConfig
from model_compression.prune.magnitude import MagnitudePruneConfig
from model_compression.prune.onnx_magnitude import prune_onnx
from model_compression.runtime.session import make_session


def _mlp_onnx(path: Path, low_rank: bool = False) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 10))
    if low_rank:  # a rank-8 first layer: SVD at 0.999 energy must find it and keep it exact
        with torch.no_grad():
            model[0].weight.copy_(torch.randn(96, 8) @ torch.randn(8, 64) / 8)
    torch.onnx.export(model, (torch.zeros(2, 64),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=17, dynamo=False)  # fmt: skip
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return make_session(path).run(None, {"x": x})[0]


def test_prune_onnx_zeroes_the_smallest_weights_per_layer(tmp_path: Path):
    src = _mlp_onnx(tmp_path / "mlp.onnx")
    done = prune_onnx(src, tmp_path / "pruned.onnx", MagnitudePruneConfig(sparsity=0.6, scope="layer", min_numel=256))
    assert done["tensors"] == 2 and done["sparsity"] == pytest.approx(0.6, abs=0.01)
    before = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(src)).graph.initializer}
    for init in onnx.load(str(tmp_path / "pruned.onnx")).graph.initializer:
        arr = onnx.numpy_helper.to_array(init)
        if arr.ndim == 2:
            kept = np.abs(before[init.name][arr != 0])
            dropped = np.abs(before[init.name][arr == 0])
            assert (arr == 0).mean() == pytest.approx(0.6, abs=0.01) and kept.min() >= dropped.max()
        else:  # biases stay dense
            assert np.array_equal(arr, before[init.name])
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    assert _run(tmp_path / "pruned.onnx", x).shape == (8, 10)


def test_prune_onnx_skips_names_and_rejects_a_graph_without_weights(tmp_path: Path):
    src = _mlp_onnx(tmp_path / "mlp.onnx")
    with pytest.raises(ValueError, match="no prunable weights"):
        prune_onnx(src, tmp_path / "p.onnx", MagnitudePruneConfig(min_numel=10**6))


def test_factorize_onnx_splits_a_low_rank_matmul_in_two_and_keeps_outputs(tmp_path: Path):
    src = _mlp_onnx(tmp_path / "mlp.onnx", low_rank=True)
    ranks = factorize_onnx(src, tmp_path / "svd.onnx", SVDConfig(energy=0.999, max_param_ratio=0.9))
    assert list(ranks.values()) == [8]  # the rank-8 layer; the full-rank 96x10 one does not pay
    before = [n.op_type for n in onnx.load(str(src)).graph.node]
    after = [n.op_type for n in onnx.load(str(tmp_path / "svd.onnx")).graph.node]
    assert len(after) == len(before) + 1 and after.count("MatMul") == before.count("MatMul") + 1
    params = sum(int(np.prod(i.dims)) for i in onnx.load(str(tmp_path / "svd.onnx")).graph.initializer)
    assert params == 8 * (64 + 96) + 96 + 96 * 10 + 10
    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    ref, got = _run(src, x), _run(tmp_path / "svd.onnx", x)
    sqnr = 10 * np.log10((ref**2).sum() / ((ref - got) ** 2).sum())
    assert sqnr > 60


def test_factorize_onnx_rejects_nan_weights(tmp_path: Path):
    src = _mlp_onnx(tmp_path / "mlp.onnx", low_rank=True)
    m = onnx.load(str(src))
    for init in m.graph.initializer:
        if len(init.dims) == 2:
            arr = onnx.numpy_helper.to_array(init).copy()
            arr[0, 0] = np.nan
            init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
            break
    onnx.save(m, str(src))
    with pytest.raises(ValueError, match="NaN or Inf"):
        factorize_onnx(src, tmp_path / "svd.onnx", SVDConfig(energy=0.999))


def test_factorize_onnx_says_when_no_layer_pays(tmp_path: Path):

    src = _mlp_onnx(tmp_path / "mlp.onnx")  # random full-rank weights
    with pytest.raises(NotApplicable, match=r"no MatMul/Gemm weight of mlp.onnx has a low rank that pays"):
        factorize_onnx(src, tmp_path / "svd.onnx", SVDConfig(energy=0.999, max_param_ratio=0.5))
    assert not (tmp_path / "svd.onnx").exists()
