"""onnxruntime int8 quantization: dynamic (weights int8, activations at run time) or
static QDQ with a calibration set.

Per-channel weights matter for transformers: per-tensor dynamic int8 of MiniLM drops the
mean cosine to fp32 to about 0.88, per-channel keeps it near 0.99. ``reduce_range`` (7-bit
weights) avoids saturation in the int8 dot products of CPUs without VNNI (AVX2 only);
``quantize/presets.py`` sets it, and the weight type, from the target's fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

QUANT_OPS = frozenset(
    {
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeLinear",
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
    }
)


@dataclass(frozen=True)
class OnnxInt8Config:
    """int8 quantization settings.

    Attributes:
        mode: ``"dynamic"`` or ``"static"`` (static needs calibration inputs).
        per_channel: one scale per output channel (default True).
        reduce_range: 7-bit weights for non-VNNI CPUs; ``None`` (default) takes the
            hardware preset (``presets.apply_preset``), or the portable avx2 choice (True).
        weight_type: ``"int8"`` or ``"uint8"``; ``None`` (default) takes the preset (int8).
        calibrate_method: static only: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        op_types: op types to quantize; empty means onnxruntime's defaults.
    """

    mode: Literal["dynamic", "static"] = "dynamic"
    per_channel: bool = True
    reduce_range: bool | None = None
    weight_type: Literal["int8", "uint8"] | None = None
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    op_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("dynamic", "static"):
            raise ValueError(f"OnnxInt8Config.mode must be 'dynamic' or 'static', got {self.mode!r}")
        if self.calibrate_method not in ("minmax", "entropy", "percentile"):
            raise ValueError(
                f"OnnxInt8Config.calibrate_method must be minmax, entropy or percentile, got {self.calibrate_method!r}"
            )
        if self.weight_type not in (None, "int8", "uint8"):
            raise ValueError(f"OnnxInt8Config.weight_type must be 'int8' or 'uint8', got {self.weight_type!r}")


class _ListReader:
    """A CalibrationDataReader over a list of feed dicts (duck-typed: get_next/rewind)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def quantize(
    src: str | Path,
    dst: str | Path,
    cfg: OnnxInt8Config,
    calibration: Iterable[dict[str, np.ndarray]] | None = None,
) -> Path:
    """Quantize the ONNX model at ``src`` to ``dst``; returns ``dst``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    op_types = list(cfg.op_types) or None
    reduce_range = True if cfg.reduce_range is None else cfg.reduce_range  # portable: right on any x86
    weight_type = QuantType.QUInt8 if cfg.weight_type == "uint8" else QuantType.QInt8
    if cfg.mode == "dynamic":
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=cfg.per_channel,
            reduce_range=reduce_range,
            weight_type=weight_type,
            op_types_to_quantize=op_types,
            # after int4 (opset 21, contrib ops) shape inference can miss a type: it is float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        return dst
    feeds = list(calibration or [])
    if not feeds:
        raise ValueError("static quantization needs a non-empty calibration set")
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[cfg.calibrate_method]
    quantize_static(
        str(src),
        str(dst),
        _ListReader(feeds),
        quant_format=QuantFormat.QDQ,
        per_channel=cfg.per_channel,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=weight_type,
        calibrate_method=method,
        op_types_to_quantize=op_types,
        extra_options={"CalibTensorRangeSymmetric": False},
        calibration_providers=["CPUExecutionProvider"],
        use_external_data_format=False,
    )
    return dst


def count_quantized_nodes(path: str | Path) -> int:
    """Number of quantization-related nodes in an ONNX graph (0 for an fp32 model)."""
    model = onnx.load(str(path), load_external_data=False)
    return sum(1 for n in model.graph.node if n.op_type in QUANT_OPS)
