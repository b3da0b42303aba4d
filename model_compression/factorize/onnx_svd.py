"""Truncated SVD of an ONNX file's MatMul/Gemm weights, by graph surgery.

``Y = X @ W`` with W (in x out) becomes ``Y = (X @ L) @ R`` with L (in x r) and R (r x out):
one MatMul becomes two. Gemm keeps its bias and scaling in the second node. Rank choice and
the "only when it pays" rule are those of ``factorize.svd`` (``SVDConfig``), so an ONNX-only
model is factorized exactly like a torch one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from model_compression.errors import NotApplicable
from model_compression.factorize.svd import SVDConfig, rank_for_energy


def _attr(node: onnx.NodeProto, name: str, default: float | int) -> float | int:
    for a in node.attribute:
        if a.name == name:
            return a.f if a.type == onnx.AttributeProto.FLOAT else a.i
    return default


def _weight_of(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> np.ndarray | None:
    """W as (in x out) for a MatMul/Gemm whose weight is a 2-D float initializer, else None."""
    if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2 or node.input[1] not in inits:
        return None
    init = inits[node.input[1]]
    if len(init.dims) != 2 or init.data_type != onnx.TensorProto.FLOAT:
        return None
    if node.op_type == "Gemm" and _attr(node, "transA", 0):
        return None
    w = numpy_helper.to_array(init)
    return w.T if node.op_type == "Gemm" and _attr(node, "transB", 0) else w


def factorize_onnx(src: str | Path, dst: str | Path, cfg: SVDConfig) -> dict[str, int]:
    """Factorize every worthwhile MatMul/Gemm weight of ``src``; write the graph to ``dst``.

    Returns:
        ``{weight initializer name: chosen rank}`` for the factorized weights.
    """
    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    ranks: dict[str, int] = {}
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        w = _weight_of(node, inits)
        name = node.input[1] if w is not None else ""
        if w is None or uses[name] != 1 or any(s in name or s in node.name for s in cfg.skip):
            new_nodes.append(node)
            continue
        if not np.isfinite(w).all():
            raise ValueError(f"weight {name!r} in {src} contains NaN or Inf values")
        n_in, n_out = w.shape
        u, s, vh = torch.linalg.svd(torch.tensor(w, dtype=torch.float64), full_matrices=False)
        r = rank_for_energy(s, cfg.energy)
        if r * (n_in + n_out) > cfg.max_param_ratio * n_in * n_out:
            new_nodes.append(node)
            continue
        root = s[:r].sqrt()
        left = (u[:, :r] * root[None, :]).float().numpy()  # in x r
        right = (root[:, None] * vh[:r]).float().numpy()  # r x out
        graph.initializer.remove(inits[name])
        graph.initializer.extend(
            [numpy_helper.from_array(left, f"{name}.svd_l"), numpy_helper.from_array(right, f"{name}.svd_r")]
        )
        mid = f"{node.output[0]}.svd_mid"
        new_nodes.append(helper.make_node("MatMul", [node.input[0], f"{name}.svd_l"], [mid], name=f"{node.name}.svd_l"))
        if node.op_type == "MatMul":
            new_nodes.append(helper.make_node("MatMul", [mid, f"{name}.svd_r"], list(node.output), name=node.name))
        else:
            rest = list(node.input[2:])
            new_nodes.append(
                helper.make_node(
                    "Gemm",
                    [mid, f"{name}.svd_r", *rest],
                    list(node.output),
                    name=node.name,
                    alpha=float(_attr(node, "alpha", 1.0)),
                    beta=float(_attr(node, "beta", 1.0)),
                )
            )
        ranks[name] = r
    if not ranks:
        raise NotApplicable(
            f"no MatMul/Gemm weight of {Path(src).name} has a low rank that pays at energy {cfg.energy} "
            f"and max_param_ratio {cfg.max_param_ratio}"
        )
    del graph.node[:]
    graph.node.extend(new_nodes)
    onnx.checker.check_model(model)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return ranks


def recipe_step(src: Path, dst: Path, cfg: SVDConfig, ctx: Any) -> dict[str, Any]:
    """Recipe step ``factorize`` on a graph with no torch model (``registry.STEPS``)."""
    ranks = factorize_onnx(src, dst, cfg)
    return {"ranks": ranks, "layers_factorized": len(ranks), "on": "onnx graph"}
