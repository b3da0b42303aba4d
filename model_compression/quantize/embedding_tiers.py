"""Bits per embedding row by rate-distortion: frequent tokens get more bits.

A table row costs only when its token occurs, so the distortion that matters is the
expected one, ``sum_i p_i * D_i(b_i)``, with ``p_i`` the token's probability in the
model's training text and ``D_i(b)`` the row's squared error at ``b`` bits (measured, not
modelled). Minimising it under a budget on the mean width is the classic allocation
problem; its Lagrangian ``p_i D_i(b) + lambda * b`` splits per row, and a bisection on
``lambda`` meets the budget (Shoham & Gersho, 1988). Unseen tokens keep a small
probability (add-half smoothing), so they still get the cheapest width rather than none.

Rows of one width form a tier, coded as one ``LowBitTable``. The graph looks up each
token's tier and its row within the tier, decodes the token in every tier (only the
looked-up rows: a few hundred per call) and keeps the one of its own tier (``Where``);
or, with ``decode="table"``, decodes every tier whole, concatenates them and puts each
row back in its place, all from constants, so the runtime does it once at load.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from model_compression.quantize.embedding_lowbit import (
    EmbeddingLowBitConfig,
    LowBitTable,
    decode_nodes,
    dequantize,
    quantize_table,
    range_nodes,
    table_initializers,
)


@dataclass(frozen=True)
class TieredTable:
    """``tiers[k]`` holds the rows whose ``tier[row] == k``, in row order; ``local[row]`` is
    the row's index inside its tier."""

    tiers: list[LowBitTable]
    tier: np.ndarray
    local: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tiers) + int(self.tier.nbytes + self.local.nbytes)

    @property
    def mean_bits(self) -> float:
        return float(np.mean([self.tiers[k].bits for k in self.tier]))


def probabilities(counts: np.ndarray) -> np.ndarray:
    """Token probabilities from occurrence ``counts`` [rows], add-half smoothed."""
    c = np.asarray(counts, np.float64) + 0.5
    return c / c.sum()


def allocate(errors: dict[int, np.ndarray], p: np.ndarray, mean_bits: float) -> np.ndarray:
    """Per-row widths from ``errors`` ({bits: squared error per row}) and probabilities
    ``p``, with mean width at most ``mean_bits``, minimising ``sum p_i * error_i``."""
    widths = np.array(sorted(errors))
    cost = np.stack([p * errors[b] for b in widths], 1)  # [rows, choices]

    def pick(lam: float) -> np.ndarray:
        return widths[np.argmin(cost + lam * widths[None, :], 1)]

    if pick(0.0).mean() <= mean_bits:
        return pick(0.0)
    lo, hi = 0.0, float(cost.max()) + 1.0  # at hi every row takes the narrowest width
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if pick(mid).mean() <= mean_bits else (mid, hi)
    return pick(hi)


def code(table: np.ndarray, counts: np.ndarray, cfg: EmbeddingLowBitConfig) -> TieredTable:
    """Code ``table`` with widths allocated for mean ``cfg.mean_bits`` from ``cfg.choices``."""
    if cfg.mean_bits is None:
        raise ValueError("tiered coding needs EmbeddingLowBitConfig.mean_bits")
    if counts.shape != (table.shape[0],):
        raise ValueError(f"token counts must have one entry per row ({table.shape[0]}), got {counts.shape}")
    coded = {b: quantize_table(table, cfg, b) for b in sorted(set(cfg.choices))}
    errors = {b: ((dequantize(t) - table) ** 2).sum(1) for b, t in coded.items()}
    bits = allocate(errors, probabilities(counts), cfg.mean_bits)
    used = sorted(set(bits.tolist()))
    tier = np.searchsorted(used, bits).astype(np.uint8)
    local = np.zeros(table.shape[0], np.uint16 if table.shape[0] <= 65536 else np.int32)
    tiers = []
    for k, b in enumerate(used):
        rows = np.flatnonzero(tier == k)
        local[rows] = np.arange(len(rows))
        t = coded[b]
        tiers.append(LowBitTable(t.packed[rows], t.scale[rows], t.offset[rows], b, cfg.block_size))
    return TieredTable(tiers, tier, local)


def dequantize_tiered(t: TieredTable) -> np.ndarray:
    """The float32 table ``t`` decodes to."""
    out = np.empty((len(t.tier), t.tiers[0].shape[1]), np.float32)
    for k, tier in enumerate(t.tiers):
        out[t.tier == k] = dequantize(tier)
    return out


def tiered_initializers(table: str, t: TieredTable) -> list[onnx.TensorProto]:
    inits = [numpy_helper.from_array(t.tier, f"{table}_tier"), numpy_helper.from_array(t.local, f"{table}_local")]
    for k, tier in enumerate(t.tiers):
        inits += table_initializers(f"{table}_t{k}", tier)
    return inits


def tiered_decode_nodes(
    prefix: str, table: str, ids: str, out: str, t: TieredTable, opset: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Like ``embedding_lowbit.decode_nodes``, for a table coded by ``code``."""
    n = f"{prefix}_tiers"
    nodes = [
        helper.make_node("Gather", [f"{table}_tier", ids], [f"{n}_tier_u8"], axis=0),
        helper.make_node("Cast", [f"{n}_tier_u8"], [f"{n}_tier"], to=onnx.TensorProto.INT64),
        helper.make_node("Gather", [f"{table}_local", ids], [f"{n}_local_raw"], axis=0),
        helper.make_node("Cast", [f"{n}_local_raw"], [f"{n}_local"], to=onnx.TensorProto.INT64),
    ]
    consts = [numpy_helper.from_array(np.array([-1], np.int64), f"{n}_last"),
              numpy_helper.from_array(np.array(0, np.int64), f"{n}_zero")]  # fmt: skip
    acc = ""
    for k, tier in enumerate(t.tiers):
        consts += [numpy_helper.from_array(np.array(k, np.int64), f"{n}_k{k}"),
                   numpy_helper.from_array(np.array(tier.shape[0], np.int64), f"{n}_size{k}")]  # fmt: skip
        dec, c = decode_nodes(f"{prefix}_t{k}", f"{table}_t{k}", f"{n}_row{k}", f"{n}_rows{k}", tier, opset)
        is_k = (
            helper.make_node("Unsqueeze", [f"{n}_eq{k}", f"{n}_last"], [f"{n}_is{k}"])
            if opset >= 13
            else helper.make_node("Unsqueeze", [f"{n}_eq{k}"], [f"{n}_is{k}"], axes=[-1])
        )
        nodes += [
            # another tier's local index may lie past this tier's end: read row 0, discarded below
            helper.make_node("Less", [f"{n}_local", f"{n}_size{k}"], [f"{n}_in{k}"]),
            helper.make_node("Where", [f"{n}_in{k}", f"{n}_local", f"{n}_zero"], [f"{n}_row{k}"]),
            *dec,
            helper.make_node("Equal", [f"{n}_tier", f"{n}_k{k}"], [f"{n}_eq{k}"]),
            is_k,
        ]
        consts += c
        if not acc:
            acc = f"{n}_rows{k}"
            continue
        merged = out if k == len(t.tiers) - 1 else f"{n}_acc{k}"
        nodes.append(helper.make_node("Where", [f"{n}_is{k}", f"{n}_rows{k}", acc], [merged]))
        acc = merged
    if len(t.tiers) == 1:
        nodes.append(helper.make_node("Identity", [acc], [out]))
    return nodes, consts


def tiered_table_nodes(
    table: str, out: str, t: TieredTable, opset: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Like ``embedding_lowbit.decode_table_nodes``, for a table coded by ``code``: row ``r``
    of ``out`` is row ``local[r]`` of tier ``tier[r]``, found at ``start[tier[r]] +
    local[r]`` in the concatenation of the decoded tiers."""
    n = f"{table}_tiers"
    starts = np.concatenate([[0], np.cumsum([tier.shape[0] for tier in t.tiers])[:-1]]).astype(np.int64)
    consts = [numpy_helper.from_array(starts, f"{n}_starts")]
    nodes: list[onnx.NodeProto] = []
    for k, tier in enumerate(t.tiers):
        rng, c = range_nodes(f"{n}_all{k}", tier.shape[0], opset)
        dec, more = decode_nodes(f"{table}_t{k}", f"{table}_t{k}", f"{n}_all{k}", f"{n}_whole{k}", tier, opset)
        nodes += [*rng, *dec]
        consts += c + more
    nodes += [
        helper.make_node("Concat", [f"{n}_whole{k}" for k in range(len(t.tiers))], [f"{n}_cat"], axis=0),
        helper.make_node("Cast", [f"{table}_tier"], [f"{n}_tier"], to=onnx.TensorProto.INT64),
        helper.make_node("Gather", [f"{n}_starts", f"{n}_tier"], [f"{n}_start"], axis=0),
        helper.make_node("Cast", [f"{table}_local"], [f"{n}_local"], to=onnx.TensorProto.INT64),
        helper.make_node("Add", [f"{n}_start", f"{n}_local"], [f"{n}_where"]),
        helper.make_node("Gather", [f"{n}_cat", f"{n}_where"], [out], axis=0),
    ]
    return nodes, consts
