"""Accuracy-aware int8: which nodes to keep in float when the int8 artifact misses its
tolerance (the idea behind NNCF's ``quantize_with_accuracy_control``).

Each weighted node (Conv, MatMul, Gemm) is quantized alone and the graph's output
distortion against float on the calibration samples is measured (1 - mean cosine); the
most sensitive come first. The caller reverts them one at a time, re-quantizing with
those nodes excluded, until its own quality check passes.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import onnx

from model_compression.quantize.checks import output_agreement
from model_compression.quantize.onnx_int8 import OnnxInt8Config, quantize

WEIGHTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def weighted_nodes(path: str | Path, op_types: tuple[str, ...] = ()) -> list[str]:
    """Names of the nodes int8 would quantize: a weighted op with an initializer weight."""
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    wanted = op_types or WEIGHTED
    return [n.name for n in model.graph.node if n.op_type in wanted and len(n.input) > 1 and n.input[1] in inits]


def sensitivity(
    src: str | Path, cfg: OnnxInt8Config, feeds: list[dict[str, np.ndarray]], nodes: list[str]
) -> dict[str, float]:
    """``{node: output distortion when it alone is int8}``, most sensitive first."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sensitivity-") as tmp:
        for i, node in enumerate(nodes):
            dst = Path(tmp) / f"{i}.onnx"
            quantize(src, dst, dataclasses.replace(cfg, only_nodes=(node,), exclude_nodes=()), feeds)
            out[node] = max(0.0, 1.0 - output_agreement(src, dst, feeds)["cosine_mean"])
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))
