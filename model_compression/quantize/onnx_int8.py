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
        exclude_nodes: node names kept in float (default none).
        only_nodes: quantize these nodes alone (default: every node of ``op_types``).
        preprocess: run onnxruntime's quantization pre-processing first (shape inference,
            graph optimization that folds BatchNormalization into convolutions). An unfolded
            BatchNorm makes int8 slower than fp32 and less faithful (default False: the
            catalogue's torch exports have none; BYO entries default to True).
        accuracy_control: when the int8 artifact misses its tolerance, revert up to this
            many of its most sensitive nodes to float, one at a time, until it passes
            (default 0: off; the pipeline's quantize stage runs it: ``quantize/fallback.py``).
        quant_format: static only: ``"qdq"`` or ``"qoperator"``; ``None`` (default) takes
            the pool's kernel profile (``quantize/kernels.py``), else QDQ.
        activation_type: static only: ``"uint8"`` or ``"int8"`` activations; ``None``
            (default) takes the kernel profile, else uint8 (U8S8, fast on every x86).
        min_cosine: the int8 graph's mean per-sample output cosine to the float graph's on
            the calibration samples must reach this before the artifact counts as built
            (default 0.9: a sanity check against broken graphs, not the quality tolerance).
        range_grid_bits: static only: each calibrated activation range is widened outward
            to a grid of 2^-``range_grid_bits`` of its magnitude's power of two before
            scales are derived (default 5: at most about 3 % wider, a twentieth of a bit of
            resolution). onnxruntime's kernels differ in the last bits between CPUs; on
            the grid those differences no longer change the artifact's bytes. 0 turns it off.
    """

    mode: Literal["dynamic", "static"] = "dynamic"
    per_channel: bool = True
    reduce_range: bool | None = None
    weight_type: Literal["int8", "uint8"] | None = None
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    op_types: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()
    only_nodes: tuple[str, ...] = ()
    quant_format: Literal["qdq", "qoperator"] | None = None
    activation_type: Literal["uint8", "int8"] | None = None
    min_cosine: float = 0.9
    preprocess: bool = False
    accuracy_control: int = 0
    range_grid_bits: int = 5

    def __post_init__(self) -> None:
        if self.mode not in ("dynamic", "static"):
            raise ValueError(f"OnnxInt8Config.mode must be 'dynamic' or 'static', got {self.mode!r}")
        if self.calibrate_method not in ("minmax", "entropy", "percentile"):
            raise ValueError(
                f"OnnxInt8Config.calibrate_method must be minmax, entropy or percentile, got {self.calibrate_method!r}"
            )
        if self.weight_type not in (None, "int8", "uint8"):
            raise ValueError(f"OnnxInt8Config.weight_type must be 'int8' or 'uint8', got {self.weight_type!r}")
        if self.quant_format not in (None, "qdq", "qoperator"):
            raise ValueError(f"OnnxInt8Config.quant_format must be 'qdq' or 'qoperator', got {self.quant_format!r}")
        if self.activation_type not in (None, "uint8", "int8"):
            raise ValueError(f"OnnxInt8Config.activation_type must be 'uint8' or 'int8', got {self.activation_type!r}")
        if self.accuracy_control < 0:
            raise ValueError(f"OnnxInt8Config.accuracy_control must be >= 0 nodes, got {self.accuracy_control}")
        if not 0 <= self.range_grid_bits <= 20:
            raise ValueError(f"OnnxInt8Config.range_grid_bits must be 0 (off) to 20, got {self.range_grid_bits}")
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ValueError(f"OnnxInt8Config.min_cosine must be in [-1, 1], got {self.min_cosine}")


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


def on_grid(lowest: np.ndarray, highest: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) widened outward to multiples of 2^(e - ``bits``), where 2^e is
    the power of two at or above the larger magnitude: a value moves onto another grid
    point only if a last-bit difference crosses one, which is 2^-``bits`` of the range
    rarely instead of always."""
    lo, hi = np.asarray(lowest, np.float64), np.asarray(highest, np.float64)
    peak = np.maximum(np.abs(lo), np.abs(hi))
    step = np.exp2(np.ceil(np.log2(np.where(peak > 0, peak, 1.0))) - bits)
    return (np.floor(lo / step) * step).astype(np.float32), (np.ceil(hi / step) * step).astype(np.float32)


def _calibrate_on_grid(src: str | Path, dst: Path, cfg: OnnxInt8Config, static: dict[str, object]) -> Path:
    """onnxruntime's own calibration, written to a cache whose ranges are then moved onto
    the grid (``on_grid``); returns the cache for ``quantize_static`` to read. The first
    pass's model is thrown away: calibration, not quantization, is what costs."""
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.calibrate import load_tensors_data, save_tensors_data

    cache = dst.with_name(dst.stem + ".ranges.json")
    quantize_static(str(src), str(dst), calibration_cache_path=str(cache), **static)
    ranges = load_tensors_data(cache)
    for data in ranges.values():
        data.lowest, data.highest = on_grid(data.lowest, data.highest, cfg.range_grid_bits)
    save_tensors_data(ranges, cache)
    return cache


def preprocess(src: str | Path, dst: Path) -> Path:
    """onnxruntime's quantization pre-processing of ``src`` into ``dst``: shape inference and
    graph optimization (BatchNormalization folded into the convolution before it)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return dst


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
    if cfg.preprocess:
        src = preprocess(src, dst.with_name(dst.stem + ".pre.onnx"))
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
            nodes_to_exclude=list(cfg.exclude_nodes),
            nodes_to_quantize=list(cfg.only_nodes) or None,
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
    static = {
        "quant_format": QuantFormat.QOperator if cfg.quant_format == "qoperator" else QuantFormat.QDQ,
        "per_channel": cfg.per_channel,
        "reduce_range": reduce_range,
        "activation_type": QuantType.QInt8 if cfg.activation_type == "int8" else QuantType.QUInt8,
        "weight_type": weight_type,
        "calibrate_method": method,
        "op_types_to_quantize": op_types,
        "nodes_to_exclude": list(cfg.exclude_nodes),
        "nodes_to_quantize": list(cfg.only_nodes) or None,
        "extra_options": {"CalibTensorRangeSymmetric": False},
        "calibration_providers": ["CPUExecutionProvider"],
        "use_external_data_format": False,
    }
    if not cfg.range_grid_bits:
        quantize_static(str(src), str(dst), _ListReader(feeds), **static)
        return dst
    cache = _calibrate_on_grid(src, dst, cfg, {**static, "calibration_data_reader": _ListReader(feeds)})
    try:
        quantize_static(str(src), str(dst), None, calibration_cache_path=str(cache), **static)
    finally:
        cache.unlink(missing_ok=True)
    return dst


def count_quantized_nodes(path: str | Path) -> int:
    """Number of quantization-related nodes in an ONNX graph (0 for an fp32 model)."""
    model = onnx.load(str(path), load_external_data=False)
    return sum(1 for n in model.graph.node if n.op_type in QUANT_OPS)
