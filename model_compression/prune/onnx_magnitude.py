"""Magnitude pruning of an ONNX file's weights, directly on the graph.

For models that arrive as ONNX only (no torch module to prune), the weight initializers
of MatMul, Gemm and Conv nodes are pruned in place with the same rules as
``prune.magnitude``: global or per-tensor threshold, small tensors and skipped names left
dense. Like the torch version it is storage-only: a dense ONNX file of zeros is no faster,
but its weights' entropy, and so the entropy-coded transfer size, drops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from model_compression.errors import NotApplicable
from model_compression.prune.magnitude import MagnitudePruneConfig, threshold

WEIGHT_OPS = {"MatMul": 1, "Gemm": 1, "Conv": 1, "ConvTranspose": 1}  # op -> index of its weight input


def weight_initializers(model: onnx.ModelProto, cfg: MagnitudePruneConfig) -> list[onnx.TensorProto]:
    """Float initializers used as the weight of a MatMul/Gemm/Conv that ``cfg`` allows to prune."""
    inits = {i.name: i for i in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        idx = WEIGHT_OPS.get(node.op_type)
        if idx is None or len(node.input) <= idx or node.input[idx] not in inits:
            continue
        name = node.input[idx]
        init = inits[name]
        numel = int(np.prod(init.dims)) if init.dims else 1
        floating = init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
        skipped = any(s in name for s in cfg.skip)
        if floating and len(init.dims) >= 2 and numel >= cfg.min_numel and not skipped and name not in names:
            names.append(name)
    return [inits[n] for n in names]


def prune_onnx(src: str | Path, dst: str | Path, cfg: MagnitudePruneConfig) -> dict[str, float]:
    """Zero the smallest-|w| weights of the ONNX model at ``src``; write it to ``dst``.

    Returns:
        ``{"sparsity": achieved fraction of zeros over the pruned tensors, "tensors": count}``.
    """
    model = onnx.load(str(src))
    targets = weight_initializers(model, cfg)
    if not targets:
        raise NotApplicable(
            f"no prunable weights in {Path(src).name}: no MatMul/Gemm/Conv weight with >= {cfg.min_numel} elements"
        )
    arrays = {t.name: numpy_helper.to_array(t) for t in targets}
    for name, arr in arrays.items():
        if not np.isfinite(arr).all():
            raise ValueError(f"weight {name!r} in {src} contains NaN or Inf values")
    if cfg.scope == "global":
        everything = torch.from_numpy(np.concatenate([np.abs(a).ravel() for a in arrays.values()]))
        cut = dict.fromkeys(arrays, threshold(everything, cfg.sparsity))
    else:
        cut = {n: threshold(torch.from_numpy(np.abs(a).ravel()), cfg.sparsity) for n, a in arrays.items()}
    zeros = total = 0
    for t in targets:
        arr = arrays[t.name].copy()
        arr[np.abs(arr) <= cut[t.name]] = 0  # ties at the threshold are pruned too
        zeros += int((arr == 0).sum())
        total += arr.size
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return {"sparsity": zeros / total, "tensors": len(targets)}


def recipe_step(src: Path, dst: Path, cfg: MagnitudePruneConfig, ctx: Any) -> dict[str, Any]:
    """Recipe step ``prune`` on a graph with no torch model (``registry.STEPS``)."""
    return {**prune_onnx(src, dst, cfg), "on": "onnx graph"}
