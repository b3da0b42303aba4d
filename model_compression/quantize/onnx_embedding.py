"""Recipe step ``embed_lowbit``: a graph's embedding tables at 1-4 bits per weight.

Finds the tables (2-D initializers read only by row lookups), codes each at one width
(``embedding_lowbit``) or, given token counts and ``mean_bits``, at widths allocated by
rate-distortion (``embedding_tiers``), and replaces each lookup with nodes that decode the
looked-up rows, exactly as the library's ``dequantize`` does; or, with ``decode="table"``,
decodes the whole table from constants, which runtimes fold when they load the graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from model_compression.errors import NotApplicable
from model_compression.quantize import embedding_tiers as tiers
from model_compression.quantize.embedding_lowbit import (
    EmbeddingLowBitConfig,
    decode_nodes,
    decode_table_nodes,
    dequantize,
    quantize_table,
    table_initializers,
)


def opset(model: onnx.ModelProto) -> int:
    """The graph's default-domain ONNX opset (13 where it names none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def tables(model: onnx.ModelProto, cfg: EmbeddingLowBitConfig) -> dict[str, list[onnx.NodeProto]]:
    """The embedding tables: 2-D initializers with at least ``cfg.min_rows`` rows, columns
    divisible by ``cfg.block_size``, whose every reader is an axis-0 Gather looking rows
    up in them -> those Gathers."""
    inits = {i.name: i for i in model.graph.initializer}
    readers: dict[str, list[tuple[int, onnx.NodeProto]]] = {}
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name in inits:
                readers.setdefault(name, []).append((k, node))

    def looked_up(k: int, n: onnx.NodeProto) -> bool:
        return k == 0 and n.op_type == "Gather" and all(a.i == 0 for a in n.attribute if a.name == "axis")

    found = {}
    for name, uses in readers.items():
        dims = list(inits[name].dims)
        big = len(dims) == 2 and dims[0] >= cfg.min_rows and dims[1] % cfg.block_size == 0
        if big and all(looked_up(k, n) for k, n in uses):
            found[name] = [n for _, n in uses]
    return found


def _code(name: str, table: np.ndarray, cfg: EmbeddingLowBitConfig, counts: np.ndarray | None) -> tuple[Any, dict]:
    tiered = cfg.mean_bits is not None and counts is not None and len(counts) == table.shape[0]
    coded: Any = tiers.code(table, counts, cfg) if tiered else quantize_table(table, cfg)  # type: ignore[arg-type]
    decoded = tiers.dequantize_tiered(coded) if tiered else dequantize(coded)
    report = {
        "rows": table.shape[0],
        "cols": table.shape[1],
        "mean_bits": coded.mean_bits if tiered else float(cfg.bits),
        "bytes_before": int(table.nbytes),
        "bytes_after": coded.nbytes,
        "rmse": float(np.sqrt(((decoded - table) ** 2).mean())),
    }
    return coded, report


DEFAULT = EmbeddingLowBitConfig()


def _insert(model: onnx.ModelProto, at: int, nodes: list[onnx.NodeProto], consts: list[onnx.TensorProto]) -> None:
    for k, node in enumerate(nodes):
        model.graph.node.insert(at + k, node)
    model.graph.initializer.extend(consts)


def _decode_rows(model: onnx.ModelProto, safe: str, gathers: list[onnx.NodeProto], coded: Any, opset: int) -> None:
    """Each lookup becomes the nodes that decode the looked-up rows."""
    decode = tiers.tiered_decode_nodes if isinstance(coded, tiers.TieredTable) else decode_nodes
    for i, gather in enumerate(gathers):
        nodes, consts = decode(f"{safe}_{i}", safe, gather.input[1], gather.output[0], coded, opset)
        at = list(model.graph.node).index(gather)
        model.graph.node.remove(gather)
        _insert(model, at, nodes, consts)


def _decode_table(model: onnx.ModelProto, safe: str, gathers: list[onnx.NodeProto], coded: Any, opset: int) -> None:
    """The whole table is decoded once, from constants, before its first lookup; every lookup
    stays a Gather, of the decoded table."""
    decode = tiers.tiered_table_nodes if isinstance(coded, tiers.TieredTable) else decode_table_nodes
    nodes, consts = decode(safe, f"{safe}_decoded", coded, opset)
    _insert(model, min(list(model.graph.node).index(g) for g in gathers), nodes, consts)
    for gather in gathers:
        gather.input[0] = f"{safe}_decoded"


def quantize(
    src: str | Path, dst: str | Path, cfg: EmbeddingLowBitConfig = DEFAULT, counts: np.ndarray | None = None
) -> dict[str, Any]:
    """Code every embedding table of the ONNX model at ``src`` and write ``dst``; returns
    ``{table: {"rows", "cols", "mean_bits", "bytes_before", "bytes_after", "rmse"}}``.
    ``counts`` (occurrences per row, for the table with that many rows) turn on the
    allocation of ``cfg.mean_bits``. A model with no table raises ``NotApplicable``."""
    model = onnx.load(str(src))
    found = tables(model, cfg)
    if not found:
        raise NotApplicable(
            f"no embedding table in {Path(src).name}: a 2-D initializer with >= {cfg.min_rows} rows and columns "
            f"divisible by block_size={cfg.block_size}, read only by axis-0 Gathers"
        )
    opset_version, report = opset(model), {}
    for name, gathers in found.items():
        init = next(i for i in model.graph.initializer if i.name == name)
        coded, report[name] = _code(name, numpy_helper.to_array(init).astype(np.float32), cfg, counts)
        safe = name.replace(".", "_").replace("/", "_")
        tiered = isinstance(coded, tiers.TieredTable)
        model.graph.initializer.remove(init)
        model.graph.initializer.extend(
            tiers.tiered_initializers(safe, coded) if tiered else table_initializers(safe, coded)
        )
        (_decode_table if cfg.decode == "table" else _decode_rows)(model, safe, gathers, coded, opset_version)
    onnx.checker.check_model(model)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return report


def recipe_step(src: Path, dst: Path, cfg: EmbeddingLowBitConfig, ctx: Any) -> dict[str, Any]:
    """Recipe step ``embed_lowbit`` (``registry.STEPS``): with ``cfg.mean_bits``, the widths
    follow the kind's token counts (``ctx.token_counts()``) where it has them."""
    counts = ctx.token_counts() if cfg.mean_bits is not None and hasattr(ctx, "token_counts") else None
    return {"tables": quantize(src, dst, cfg, counts)}
