"""Hardware presets for int8: chosen from a fingerprint, applied to a config, and visible
in the quantized model's weights."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from model_compression.quantize.onnx_int8 import OnnxInt8Config, quantize
from model_compression.quantize.presets import PRESETS, apply_preset, preset_for
from tests.model_compression.test_quantize import mlp_onnx  # noqa: F401  # fixture

X86 = {"machine": "x86_64"}


@pytest.mark.parametrize(
    ("fp", "expected"),
    [
        ({"machine": "aarch64", "flags": ["asimd", "asimddp"]}, "arm64"),
        ({"machine": "arm64", "flags": []}, "arm64"),
        ({**X86, "flags": ["avx2", "avx512f", "avx512_vnni"]}, "avx512_vnni"),
        ({**X86, "flags": ["avx2", "avx_vnni"]}, "avx512_vnni"),
        ({**X86, "flags": ["avx2", "avx512f"]}, "avx512"),
        ({**X86, "flags": ["avx2"]}, "avx2"),
        ({"machine": "unknown"}, "avx2"),
    ],
)
def test_preset_follows_the_fingerprint(fp: dict, expected: str):
    assert preset_for(fp) == expected


def test_preset_fills_only_unset_fields():
    cfg = apply_preset(OnnxInt8Config(), "avx512_vnni")
    assert cfg.reduce_range is False and cfg.weight_type == "int8"
    assert apply_preset(OnnxInt8Config(), "avx2").reduce_range is True
    pinned = apply_preset(OnnxInt8Config(reduce_range=True), "avx512_vnni")
    assert pinned.reduce_range is True  # the recipe's explicit choice wins
    assert set(PRESETS) == {"arm64", "avx2", "avx512", "avx512_vnni"}


def test_unknown_preset_and_weight_type_are_errors():
    with pytest.raises(ValueError, match="unknown quantization preset 'sse4'"):
        apply_preset(OnnxInt8Config(), "sse4")
    with pytest.raises(ValueError, match="weight_type must be 'int8' or 'uint8'"):
        OnnxInt8Config(weight_type="int4")  # type: ignore[arg-type]


def _int8_weights(path: Path) -> np.ndarray:
    model = onnx.load(str(path))
    ws = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    return np.concatenate([w.ravel() for w in ws if w.size > 64])


def test_vnni_preset_uses_the_full_8_bit_range_and_avx2_seven_bits(mlp_onnx: Path, tmp_path: Path):  # noqa: F811
    wide = quantize(mlp_onnx, tmp_path / "vnni.onnx", apply_preset(OnnxInt8Config(), "avx512_vnni"))
    narrow = quantize(mlp_onnx, tmp_path / "avx2.onnx", apply_preset(OnnxInt8Config(), "avx2"))
    assert np.abs(_int8_weights(wide)).max() == 127
    assert np.abs(_int8_weights(narrow)).max() == 64  # reduce_range: 7-bit weights, [-64, 64]
