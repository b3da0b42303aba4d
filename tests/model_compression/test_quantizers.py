"""The quantizer primitives: linear, sign/binary, k-means codebooks, onnxruntime int4."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from model_compression.quantize import binary, kmeans, linear
from model_compression.quantize.onnx_int4 import Int4Config, count_int4_nodes
from model_compression.quantize.onnx_int4 import quantize as int4_quantize
from model_compression.runtime.session import make_session


def gaussian(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_symmetric_linear_quantizer_sqnr_grows_6db_per_bit(bits):
    w = gaussian(64, 256)
    q = linear.quantize(w, linear.LinearQuantConfig(bits=bits))
    qmax = 2 ** (bits - 1) - 1
    assert int(q.codes.abs().max()) == qmax  # the peak maps onto the grid's end
    # 40.1 dB at 8 bits for Gaussian weights scaled by their peak; 6.02 dB less per bit
    assert linear.sqnr_db(w, q.dequantize()) == pytest.approx(40.1 - 6.02 * (8 - bits), abs=1.5)


def test_per_channel_beats_per_tensor_when_channel_scales_differ():
    w = gaussian(32, 128) * torch.logspace(-2, 0, 32)[:, None]  # channels 100x apart
    per_tensor = linear.quantize(w, linear.LinearQuantConfig(bits=4))
    per_channel = linear.quantize(w, linear.LinearQuantConfig(bits=4, per_channel=True))
    assert per_channel.scale.shape == (32, 1)
    assert linear.sqnr_db(w, per_channel.dequantize()) > linear.sqnr_db(w, per_tensor.dequantize()) + 6


def test_asymmetric_quantizer_uses_the_full_unsigned_range_and_keeps_zero_exact():
    w = torch.rand(16, 64) * 3.0 + 0.5  # all positive: a symmetric grid wastes half its codes
    w[0, 0] = 0.0
    q = linear.quantize(w, linear.LinearQuantConfig(bits=8, symmetric=False))
    assert int(q.codes.min()) == int(q.zero_point) and int(q.codes.max()) == 255
    assert q.dequantize()[0, 0].item() == 0.0
    sym = linear.quantize(w, linear.LinearQuantConfig(bits=8))
    assert linear.sqnr_db(w, q.dequantize()) > linear.sqnr_db(w, sym.dequantize())


def test_linear_quantizer_rejects_bad_bits_and_nan():
    with pytest.raises(ValueError, match="bits must be in"):
        linear.LinearQuantConfig(bits=1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        linear.quantize(torch.tensor([1.0, float("nan")]))


def test_binary_quantizer_scale_is_mean_magnitude_and_sqnr_matches_theory():
    w = gaussian(64, 1024)
    signs, alpha = binary.binarize(w)
    assert set(signs.unique().tolist()) == {-1, 1} and signs.dtype == torch.int8
    assert torch.allclose(alpha.flatten(), w.abs().mean(1), atol=1e-6)
    # for Gaussian weights the best sign approximation keeps 2/pi of the energy: 4.4 dB
    assert linear.sqnr_db(w, binary.dequantize(signs, alpha)) == pytest.approx(4.4, abs=0.2)


def test_kmeans_keeps_zeros_and_at_most_2_pow_bits_shared_values():
    w = gaussian(64, 256)
    w[w.abs() < 0.5] = 0.0  # about 38 % pruned
    model = nn.Sequential(nn.Linear(256, 64))
    with torch.no_grad():
        model[0].weight.copy_(w)
    kmeans.share(model, kmeans.KMeansConfig(bits=4))
    shared = model[0].weight.detach()
    assert torch.equal(shared == 0, w == 0)  # pruned stay pruned, kept stay non-zero
    assert kmeans.distinct_values(model, kmeans.KMeansConfig(bits=4))["0.weight"] <= 17
    assert torch.equal(shared, shared.half().float())  # the codebook is float16-exact
    assert linear.sqnr_db(w, shared) > 20.0  # 16 levels fitted to the data: ~4-bit quality


def test_kmeans_beats_a_linear_grid_at_the_same_bits():
    w = gaussian(128, 256) ** 3  # heavy-tailed, as trained weights are
    book, idx = kmeans.cluster(w, bits=3)
    assert book.numel() == 8 and torch.all(book[1:] > book[:-1])
    lin = linear.quantize(w, linear.LinearQuantConfig(bits=4))  # 15 levels
    assert linear.sqnr_db(w, book[idx].reshape(w.shape)) > linear.sqnr_db(w, lin.dequantize())


def test_kmeans_is_deterministic_and_validates():
    w = gaussian(32, 64)
    assert torch.equal(kmeans.cluster(w, 4)[0], kmeans.cluster(w.clone(), 4)[0])
    with pytest.raises(ValueError, match="bits must be in"):
        kmeans.KMeansConfig(bits=9)
    with pytest.raises(ValueError, match="no weight matrices to share"):
        kmeans.share(nn.Sequential(nn.Linear(4, 4)), kmeans.KMeansConfig())


@pytest.fixture
def gather_matmul_onnx(tmp_path: Path) -> Path:
    """ids -> embedding lookup (1000 x 64) -> MatMul (64 x 128): the shape of an encoder's ends."""
    rng = np.random.default_rng(0)
    table = rng.standard_normal((1000, 64)).astype(np.float32)
    weight = rng.standard_normal((64, 128)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["emb"]), helper.make_node("MatMul", ["emb", "w"], ["out"])],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16, 128])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(weight, "w")],
    )
    path = tmp_path / "gm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize(
    ("ops", "nodes", "numel"), [(("Gather",), 1, 64_000), (("MatMul",), 1, 8_192), (("MatMul", "Gather"), 2, 72_192)]
)
def test_int4_weight_only_nodes_run_and_stay_close(gather_matmul_onnx: Path, tmp_path: Path, ops, nodes, numel):
    out = int4_quantize(gather_matmul_onnx, tmp_path / "q.onnx", Int4Config(ops=ops, block_size=32))
    assert count_int4_nodes(out) == nodes
    feeds = {"ids": np.arange(16, dtype=np.int64)[None] * 37}
    ref = make_session(gather_matmul_onnx).run(None, feeds)[0]
    got = make_session(out).run(None, feeds)[0]
    sqnr = 10 * np.log10((ref**2).sum() / ((ref - got) ** 2).sum())
    assert 14.0 < sqnr < 26.0  # 4-bit weights: about 20 dB, per quantized tensor
    # each quantized weight drops from 4 bytes to half a byte plus a 4-byte scale per 32
    saved = gather_matmul_onnx.stat().st_size - out.stat().st_size
    assert saved == pytest.approx(numel * (4 - 0.5 - 4 / 32), rel=0.02)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"ops": ("Conv",)}, "ops must be"), ({"block_size": 48}, "power of two"), ({"accuracy_level": 7}, "0..4")],
)
def test_int4_config_names_the_bad_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Int4Config(**kwargs)
