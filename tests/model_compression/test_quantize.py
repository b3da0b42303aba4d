"""int8 quantization of small ONNX models: node counts and SQNR against fp32."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model_compression import onnx_export
from model_compression.quantize.onnx_int8 import OnnxInt8Config, count_quantized_nodes, on_grid, quantize
from model_compression.runtime.session import make_session


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).sum() / ((ref - out) ** 2).sum()))


@pytest.fixture
def mlp_onnx(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 16))
    return onnx_export.export(
        model, {"x": torch.randn(2, 64)}, tmp_path / "mlp.onnx", "y", {"x": {0: "b"}, "y": {0: "b"}}
    )


@pytest.fixture
def cnn_onnx(tmp_path: Path) -> Path:
    from model_compression.models.fashion_cnn import CNNConfig, FashionCNN

    torch.manual_seed(0)
    model = FashionCNN(CNNConfig(channels=(4, 8), hidden=16))
    return onnx_export.export(
        model, {"image": torch.zeros(2, 1, 28, 28)}, tmp_path / "cnn.onnx", "logits", {"image": {0: "b"}}
    )


def test_dynamic_int8_quantizes_every_matmul(mlp_onnx: Path, tmp_path: Path):
    out = quantize(mlp_onnx, tmp_path / "q.onnx", OnnxInt8Config(mode="dynamic"))
    assert count_quantized_nodes(mlp_onnx) == 0
    import onnx

    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("MatMulInteger") == 3
    x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    ref = make_session(mlp_onnx).run(None, {"x": x})[0]
    got = make_session(out).run(None, {"x": x})[0]
    assert sqnr_db(ref, got) > 25.0
    assert out.stat().st_size < 0.4 * mlp_onnx.stat().st_size


def test_static_qdq_with_calibration(cnn_onnx: Path, tmp_path: Path):
    rng = np.random.default_rng(0)
    calib = [{"image": rng.standard_normal((8, 1, 28, 28)).astype(np.float32)} for _ in range(4)]
    out = quantize(cnn_onnx, tmp_path / "q.onnx", OnnxInt8Config(mode="static"), calib)
    assert count_quantized_nodes(out) >= 8  # Q/DQ pairs around both convs and both linears
    x = calib[0]["image"]
    ref = make_session(cnn_onnx).run(None, {"image": x})[0]
    got = make_session(out).run(None, {"image": x})[0]
    assert sqnr_db(ref, got) > 15.0


def test_static_ranges_on_a_grid_absorb_last_bit_differences(cnn_onnx: Path, tmp_path: Path):
    """Calibration inputs that differ in their last bits (as onnxruntime's kernels do
    between CPUs) change the bytes of a plain static int8 graph, not of one whose ranges
    are on the grid."""
    rng = np.random.default_rng(0)
    calib = [{"image": rng.standard_normal((8, 1, 28, 28)).astype(np.float32)} for _ in range(4)]
    nudged = [{"image": np.nextafter(f["image"], np.float32(np.inf))} for f in calib]
    built = {}
    for bits in (0, 5):
        cfg = OnnxInt8Config(mode="static", range_grid_bits=bits)
        a = quantize(cnn_onnx, tmp_path / f"a{bits}.onnx", cfg, calib).read_bytes()
        b = quantize(cnn_onnx, tmp_path / f"b{bits}.onnx", cfg, nudged).read_bytes()
        built[bits] = (a, b)
    assert built[0][0] != built[0][1]
    assert built[5][0] == built[5][1]
    assert not list(tmp_path.glob("*.ranges.json"))  # the rounded cache does not outlive the call


def test_on_grid_widens_ranges_outward_to_multiples_of_the_step():
    lo, hi = on_grid(np.array([-0.3, 0.0], np.float32), np.array([1.7, 0.0], np.float32), 5)
    step = 2.0**1 / 32  # 1.7 is below 2^1: the grid of that power of two, 32 steps
    assert lo[0] <= -0.3 and hi[0] >= 1.7 and hi[0] - 1.7 < step and -0.3 - lo[0] < step
    assert (lo[0] / step).is_integer() and (hi[0] / step).is_integer()
    assert lo[1] == hi[1] == 0.0
    assert on_grid(np.float32(-0.3), np.nextafter(np.float32(1.7), np.float32(2)), 5)[1] == hi[0]


def test_static_without_calibration_is_an_error(cnn_onnx: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="calibration set"):
        quantize(cnn_onnx, tmp_path / "q.onnx", OnnxInt8Config(mode="static"), [])


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match=r"OnnxInt8Config\.mode"):
        OnnxInt8Config(mode="int3")  # type: ignore[arg-type]


def test_export_is_byte_stable(tmp_path: Path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8))
    a = onnx_export.export(model, {"x": torch.zeros(1, 8)}, tmp_path / "a.onnx", "y", {})
    b = onnx_export.export(model, {"x": torch.zeros(1, 8)}, tmp_path / "b.onnx", "y", {})
    assert a.read_bytes() == b.read_bytes()


def test_corrupt_onnx_file_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a model")
    with pytest.raises(ValueError, match="cannot load ONNX model"):
        make_session(bad)
