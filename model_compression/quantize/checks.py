"""Checks an int8 graph must pass before it counts as built.

- ``zero_dead_channels``: static int8 stores each bias as int32 round(bias / (input scale x
  weight scale)). An output channel whose weights are all nearly zero, common in a
  depthwise convolution after BatchNorm folding, gets a weight scale near zero and a bias
  that can overflow int32 (with uint8 weights, or without onnxruntime's weight-scale
  adjustment). Setting such channels exactly to zero first removes the case: an all-zero
  channel never saturates, and the weights it loses were below any int8 step anyway.
- ``saturated_biases``: a bias onnxruntime clipped to the int32 limits. Correct biases
  of small-scale channels legitimately sit near 2^31, so only the limits themselves count.
- ``output_agreement``: the int8 graph's outputs against the float graph's on the
  calibration samples (never evaluation data): per-sample cosine of the first output,
  top-1 agreement when it looks like logits, and the largest absolute error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from model_compression.runtime.session import make_session

INT32_LIMIT = 2**31 - 1


def saturated_biases(path: str | Path) -> dict[str, dict[str, int | str]]:
    """``{node: {"bias", "saturated", "channels"}}`` of every node whose int32 bias holds a
    clipped value: exactly 2^31 - 1 or -2^31."""
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT32}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: dict[str, dict[str, int | str]] = {}
    for node in model.graph.node:
        bias = None
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:  # QDQ: bias -> DQ -> Conv/Gemm
            bias = node.input[0]
            users = [u for u in consumers.get(node.output[0], []) if u.op_type in ("Conv", "Gemm", "ConvTranspose")]
            targets = [u.name for u in users]
        elif node.op_type in ("QLinearConv",) and len(node.input) > 8 and node.input[8] in inits:  # QOperator
            bias, targets = node.input[8], [node.name]
        if bias is None:
            continue
        values = numpy_helper.to_array(inits[bias]).astype(np.int64)
        hot = (values >= INT32_LIMIT) | (values <= -INT32_LIMIT - 1)
        for target in targets if hot.any() else []:
            found[target] = {"bias": bias, "saturated": int(hot.sum()), "channels": int(values.size)}
    return found


def _output_axis(node: onnx.NodeProto) -> int:
    """The axis of a node's weight that indexes its output channels."""
    if node.op_type == "ConvTranspose" or node.op_type == "MatMul":
        return 1
    if node.op_type == "Gemm":
        return 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
    return 0  # Conv: [out, in / groups, *kernel]


def zero_dead_channels(src: str | Path, dst: str | Path, eps: float = 1e-6) -> dict[str, list[int]]:
    """Write ``src`` to ``dst`` with every output channel whose weights are all below ``eps``
    in magnitude set exactly to zero; returns ``{node: [channels zeroed]}`` (empty: the
    weights are untouched)."""
    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    zeroed: dict[str, list[int]] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        init = inits.get(node.input[1])
        if init is None or init.data_type != onnx.TensorProto.FLOAT or len(init.dims) < 2:
            continue
        w = numpy_helper.to_array(init).copy()
        axis = _output_axis(node)
        peak = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(axis=1)
        dead = np.flatnonzero((peak < eps) & (peak > 0))
        if dead.size:
            np.moveaxis(w, axis, 0)[dead] = 0.0
            init.CopyFrom(numpy_helper.from_array(w, init.name))
            zeroed[node.name or init.name] = dead.tolist()
    onnx.save(model, str(dst))
    return zeroed


def output_agreement(reference: str | Path, path: str | Path, feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """How closely ``path`` reproduces ``reference`` on ``feeds``: mean and min per-sample
    cosine of the first output, its top-1 agreement (2-D outputs), largest absolute error,
    and whether every output was finite."""
    ref, got = make_session(reference), make_session(path)
    cosines, agree, worst, finite = [], [], 0.0, True
    for feed in feeds:
        a = np.asarray(ref.run(None, feed)[0], dtype=np.float64)
        b = np.asarray(got.run(None, feed)[0], dtype=np.float64)
        finite = finite and bool(np.isfinite(b).all())
        fa, fb = a.reshape(len(a), -1), np.nan_to_num(b).reshape(len(b), -1)
        norms = np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1)
        cosines.extend((fa * fb).sum(1) / np.where(norms == 0, 1.0, norms))
        if a.ndim == 2 and a.shape[1] > 1:
            agree.extend(a.argmax(1) == b.argmax(1))
        worst = max(worst, float(np.abs(fa - fb).max()))
    out = {"cosine_mean": float(np.mean(cosines)), "cosine_min": float(np.min(cosines)), "max_abs_error": worst,
           "finite": float(finite), "samples": float(len(cosines))}  # fmt: skip
    if agree:
        out["top1_agreement"] = float(np.mean(agree))
    return out
