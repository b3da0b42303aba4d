"""int4 weight-only quantization with onnxruntime: ``MatMulNBits`` for MatMul weights and
``GatherBlockQuantized`` for embedding tables (com.microsoft contrib ops, CPU kernels).

Weights are split into blocks of ``block_size`` values along the reduction axis, each with
its own scale (and zero point when asymmetric): 4 bits per weight plus 32 bits per block.
Activations stay float. On AVX2/AVX-512 CPUs the int4 MatMul kernels are slower than int8
``MatMulInteger`` at batch 1 (BENCHMARKS.md), so the pipeline's drop-in recipe uses int4
for the embedding table (a lookup: no arithmetic) and int8 for the MatMuls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

INT4_OPS = frozenset({"MatMulNBits", "GatherBlockQuantized"})


@dataclass(frozen=True)
class Int4Config:
    """Attributes:
    ops: which op types to quantize: any of ``"MatMul"``, ``"Gather"`` (default both).
    block_size: weights per scale, a power of two >= 16 (default 32).
    symmetric: symmetric blocks (no zero point; default True).
    accuracy_level: MatMulNBits compute type: 0 = as the input, 4 = int8 (fastest on CPU).
    """

    ops: tuple[str, ...] = ("MatMul", "Gather")
    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int = 4

    def __post_init__(self) -> None:
        bad = sorted(set(self.ops) - {"MatMul", "Gather"})
        if not self.ops or bad:
            raise ValueError(f"Int4Config.ops must be a non-empty subset of ['Gather', 'MatMul'], got {list(self.ops)}")
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise ValueError(f"Int4Config.block_size must be a power of two >= 16, got {self.block_size}")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise ValueError(f"Int4Config.accuracy_level must be in 0..4, got {self.accuracy_level}")


def _axes_as_inputs(model: onnx.ModelProto) -> None:
    """The int4 quantizer raises the opset to 21, where Reduce* ops take ``axes`` as an
    input, not an attribute: move it, or onnxruntime rejects the graph."""
    for node in model.graph.node:
        if not node.op_type.startswith("Reduce"):
            continue
        axes = [a for a in node.attribute if a.name == "axes"]
        if axes:
            name = f"{node.output[0]}__axes"
            model.graph.initializer.append(numpy_helper.from_array(np.array(axes[0].ints, np.int64), name))
            node.attribute.remove(axes[0])
            node.input.append(name)


def quantize(src: str | Path, dst: str | Path, cfg: Int4Config = Int4Config()) -> Path:
    """Quantize the ONNX model at ``src`` to int4 weights and write ``dst``; returns ``dst``."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    model = onnx.load(str(src))
    algo = DefaultWeightOnlyQuantConfig(
        block_size=cfg.block_size,
        is_symmetric=cfg.symmetric,
        accuracy_level=cfg.accuracy_level,
        op_types_to_quantize=tuple(cfg.ops),
        quant_axes=(("MatMul", 0), ("Gather", 1)),
    )
    quantizer = MatMulNBitsQuantizer(model, algo_config=algo, op_types_to_quantize=tuple(cfg.ops))
    quantizer.process()
    out = quantizer.model.model
    if any(o.domain in ("", "ai.onnx") and o.version >= 18 for o in out.opset_import):
        _axes_as_inputs(out)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(out, str(dst))
    return dst


def count_int4_nodes(path: str | Path) -> int:
    """Number of int4 weight-only nodes (MatMulNBits, GatherBlockQuantized) in a graph."""
    return sum(1 for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in INT4_OPS)


def recipe_step(src: Path, dst: Path, cfg: Int4Config, ctx: Any) -> dict[str, Any]:
    """Recipe step ``int4``: weight-only int4 blocks (``registry.STEPS``)."""
    quantize(src, dst, cfg)
    return {"int4_nodes": count_int4_nodes(dst)}
