"""Embedding tables at 1-4 bits per weight, decoded inside the ONNX graph with standard ops.

A word-embedding table is a lookup: only the rows of the tokens in the input are ever
read. So it can be stored far below int8 at no compute cost, as long as the graph decodes
just the looked-up rows. Each row is cut into blocks of ``block_size`` values; a block
keeps ``bits``-bit codes and a float16 scale and offset (asymmetric uniform grid). Codes
are packed in groups of the fewest whole bytes that hold whole codes (1 byte for 1, 2 and
4 bits, 3 for 3), little-endian, in planes (``_pack``).

The range of each block is chosen by a small search: shrinking it clips a few outliers
but refines the grid for all the others; the candidate with the least squared error
wins (as AWQ/HQQ-style clipping searches do). Cost per table row (``D`` values):
``D * bits / 8`` bytes of codes plus 4 bytes per block.

Decoding (``decode_nodes``) uses only ONNX standard ops, so any runtime runs it:
Gather the packed rows and the block scales and offsets, combine each group's bytes
into one number (Cast, Mul, ReduceSum), split it into codes (Mul by powers of ``2**-bits``,
Floor, Slice, Sub), then ``code * scale + offset``, all in float32. The decoded rows equal
``dequantize`` of the stored table exactly (a test checks it).

Where decoding happens is a choice between memory and speed (``decode``): ``rows`` decodes
the looked-up rows at every call (about 20 small ops per table: the least memory, but at
batch 1 their fixed cost is a visible share of a small encoder's time); ``table`` decodes
the whole table from the stored initializers only (``decode_table_nodes``), which every
runtime that folds constants (onnxruntime at any optimisation level) does once when the
session loads, leaving a plain Gather per call. The file is as small either way, but the
memory is not: onnxruntime holds the folded intermediates while it loads. For MiniLM's
30,522 x 384 table, loading peaked at about 800 MB of RSS against 86 MB decoding rows,
and the session kept 141-291 MB against 41 MB (BENCHMARKS.md, issue 19).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True)
class EmbeddingLowBitConfig:
    """Attributes:
    bits: bits per weight, 1-4, for every row (default 3), unless ``mean_bits`` is set.
    mean_bits: with token counts, each row gets a width from ``choices`` so that the mean
        over rows is at most this, chosen by rate-distortion (``embedding_tiers``): frequent
        tokens and spread-out rows get more bits (default None: ``bits`` everywhere).
    choices: the widths ``mean_bits`` picks from (default 2, 3, 4).
    block_size: values per scale and offset along a row; divides the row length, and is
        a multiple of 8 (default 64).
    min_rows: only tables with at least this many rows are coded, so small position or
        segment tables stay float (default 1024).
    clip_ratios: the range shrink factors tried per block, the least squared error wins
        (default 1.0 down to 0.7).
    decode: ``rows`` (default) decodes the looked-up rows at every call, ``table`` the whole
        table once when the runtime loads the graph (faster per call; loading needs many times
        the float32 table in memory, see the module notes).
    """

    bits: int = 3
    mean_bits: float | None = None
    choices: tuple[int, ...] = (2, 3, 4)
    block_size: int = 64
    min_rows: int = 1024
    clip_ratios: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)
    decode: str = "rows"

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 4:
            raise ValueError(f"EmbeddingLowBitConfig.bits must be in 1..4, got {self.bits}")
        if not self.choices or not all(1 <= b <= 4 for b in self.choices):
            raise ValueError(f"EmbeddingLowBitConfig.choices must be widths in 1..4, got {list(self.choices)}")
        if self.mean_bits is not None and not min(self.choices) <= self.mean_bits <= max(self.choices):
            raise ValueError(
                f"EmbeddingLowBitConfig.mean_bits must be within choices {list(self.choices)}, got {self.mean_bits}"
            )
        if self.block_size < 8 or self.block_size % 8:
            raise ValueError(f"EmbeddingLowBitConfig.block_size must be a multiple of 8, got {self.block_size}")
        if self.min_rows < 1:
            raise ValueError(f"EmbeddingLowBitConfig.min_rows must be >= 1, got {self.min_rows}")
        if not self.clip_ratios or not all(0 < r <= 1 for r in self.clip_ratios):
            raise ValueError(f"EmbeddingLowBitConfig.clip_ratios must be in (0, 1], got {list(self.clip_ratios)}")
        if self.decode not in ("rows", "table"):
            raise ValueError(f"EmbeddingLowBitConfig.decode must be 'rows' or 'table', got {self.decode!r}")


@dataclass(frozen=True)
class LowBitTable:
    """A coded table: ``packed`` uint8 [rows, cols * bits / 8]; ``scale`` and ``offset``
    float16 [rows, cols / block_size]."""

    packed: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    bits: int
    block_size: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.packed.shape[0], self.packed.shape[1] * 8 // self.bits

    @property
    def nbytes(self) -> int:
        return int(self.packed.nbytes + self.scale.nbytes + self.offset.nbytes)


def _grid(lo: np.ndarray, hi: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """float16 (scale, offset) of the grid from ``lo`` to ``hi``, as stored."""
    scale = ((hi - lo) / (2**bits - 1)).astype(np.float16)
    return scale, lo.astype(np.float16)


def _codes(blocks: np.ndarray, scale: np.ndarray, offset: np.ndarray, bits: int) -> np.ndarray:
    s, o = scale.astype(np.float32)[..., None], offset.astype(np.float32)[..., None]
    safe = np.where(s == 0, 1.0, s)  # a constant block: every code 0, decoded to the offset
    return np.clip(np.rint((blocks - o) / safe), 0, 2**bits - 1).astype(np.uint8)


def _decode(codes: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    # the graph's order of operations: (code * scale) + offset, each in float32
    return codes.astype(np.float32) * scale.astype(np.float32)[..., None] + offset.astype(np.float32)[..., None]


def quantize_table(
    table: np.ndarray, cfg: EmbeddingLowBitConfig = EmbeddingLowBitConfig(), bits: int | None = None
) -> LowBitTable:
    """Code a float [rows, cols] ``table`` (cols divisible by ``cfg.block_size``) at
    ``bits`` (default ``cfg.bits``)."""
    bits = cfg.bits if bits is None else bits
    if table.ndim != 2 or table.shape[1] % cfg.block_size:
        raise ValueError(f"table must be 2-D with columns divisible by block_size={cfg.block_size}, got {table.shape}")
    rows, cols = table.shape
    blocks = table.astype(np.float32).reshape(rows, cols // cfg.block_size, cfg.block_size)
    lo0, hi0 = blocks.min(-1), blocks.max(-1)
    mid, half = (lo0 + hi0) / 2, (hi0 - lo0) / 2
    best_err = np.full(lo0.shape, np.inf, np.float32)
    scale = np.zeros(lo0.shape, np.float16)
    offset = np.zeros(lo0.shape, np.float16)
    for r in cfg.clip_ratios:
        s, o = _grid(mid - half * r, mid + half * r, bits)
        err = ((_decode(_codes(blocks, s, o, bits), s, o) - blocks) ** 2).sum(-1)
        better = err < best_err
        best_err, scale, offset = (
            np.where(better, err, best_err),
            np.where(better, s, scale),
            np.where(better, o, offset),
        )
    codes = _codes(blocks, scale, offset, bits).reshape(rows, cols)
    return LowBitTable(_pack(codes, bits), scale, offset, bits, cfg.block_size)


def _layout(bits: int) -> tuple[int, int]:
    """(bytes, codes) per group: the fewest whole bytes that hold whole codes (lcm(bits, 8)
    bits), so that a group's value stays below 2**24, exact in float32."""
    group_bits = int(np.lcm(bits, 8))
    return group_bits // 8, group_bits // bits


def _pack(codes: np.ndarray, bits: int) -> np.ndarray:
    # Planar: with G = cols / codes-per-group, group g holds columns g, G + g, 2G + g, ...,
    # and the row stores byte 0 of every group, then byte 1, ... So each step of the
    # in-graph decode runs over G contiguous values, never over a 2-8 wide last axis.
    nbytes, ncodes = _layout(bits)
    rows, cols = codes.shape
    planes = codes.reshape(rows, ncodes, cols // ncodes).astype(np.uint32)
    word = (planes << (np.arange(ncodes, dtype=np.uint32) * bits)[:, None]).sum(1)  # < 2**24
    out = (word[:, None, :] >> (np.arange(nbytes, dtype=np.uint32) * 8)[:, None]) & 0xFF
    return out.astype(np.uint8).reshape(rows, cols * bits // 8)


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """The uint8 codes [rows, cols] of ``packed``."""
    nbytes, ncodes = _layout(bits)
    rows, width = packed.shape
    b = packed.reshape(rows, nbytes, width // nbytes).astype(np.uint32)
    word = (b << (np.arange(nbytes, dtype=np.uint32) * 8)[:, None]).sum(1)
    codes = (word[:, None, :] >> (np.arange(ncodes, dtype=np.uint32) * bits)[:, None]) & (2**bits - 1)
    return codes.astype(np.uint8).reshape(rows, width // nbytes * ncodes)


def dequantize(t: LowBitTable) -> np.ndarray:
    """The float32 table that ``t`` decodes to (the graph gives exactly these rows)."""
    rows, cols = t.shape
    codes = unpack(t.packed, t.bits).reshape(rows, cols // t.block_size, t.block_size)
    return _decode(codes, t.scale, t.offset).reshape(rows, cols)


def table_initializers(table: str, t: LowBitTable) -> list[onnx.TensorProto]:
    """The stored form of ``t``: ``<table>_lowbit_{packed,scale,offset}``."""
    parts = {"packed": t.packed, "scale": t.scale, "offset": t.offset}
    return [numpy_helper.from_array(v, f"{table}_lowbit_{k}") for k, v in parts.items()]


def decode_nodes(
    prefix: str, table: str, ids: str, out: str, t: LowBitTable, opset: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and constants computing ``out`` = rows ``ids`` of ``t`` (stored under the
    names of ``table_initializers(table, t)``), decoded, with the shape ``ids.shape +
    [cols]``: a drop-in for ``Gather(table, ids)``.

    All in float32, which holds every integer below 2**24 exactly. A group's bytes make one
    number ``w``; with ``q_k = floor(w / 2**(k*bits))`` (a multiply by a power of 2: exact),
    code k is ``q_k - 2**bits * q_(k+1)``: no Div or Mod, which cost a third of a 3-layer
    int8 encoder's time on AVX2 (fmod per element, and broadcasts over a 2-8 wide axis)."""
    cols, bits, block = t.shape[1], t.bits, t.block_size
    nbytes, ncodes = _layout(bits)
    n = f"{prefix}_lowbit"
    consts: dict[str, np.ndarray] = {
        "planes": np.array([-1, nbytes, cols // ncodes], np.int64),
        "byte_weights": (256.0 ** np.arange(nbytes)).astype(np.float32)[:, None],
        "inv_shifts": (2.0 ** (-bits * np.arange(ncodes + 1))).astype(np.float32)[:, None],
        "levels": np.array(2.0**bits, np.float32),
        "lo": np.array([0], np.int64),
        "hi": np.array([1], np.int64),
        "end": np.array([ncodes], np.int64),
        "past": np.array([ncodes + 1], np.int64),
        "axis": np.array([1], np.int64),
        "blocks": np.array([-1, cols // block, block], np.int64),
        "per_block": np.array([-1, cols // block, 1], np.int64),
        "cols": np.array([cols], np.int64),
        "sum_axis": np.array([-2], np.int64),
    }
    c = {k: f"{n}_{k}" for k in consts} | {k: f"{table}_lowbit_{k}" for k in ("packed", "scale", "offset")}
    reduce = (
        helper.make_node("ReduceSum", [f"{n}_w", c["sum_axis"]], [f"{n}_word"], keepdims=1)
        if opset >= 13
        else helper.make_node("ReduceSum", [f"{n}_w"], [f"{n}_word"], axes=[-2], keepdims=1)
    )
    nodes = [
        helper.make_node("Gather", [c["packed"], ids], [f"{n}_rows"], axis=0),
        helper.make_node("Cast", [f"{n}_rows"], [f"{n}_f"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Reshape", [f"{n}_f", c["planes"]], [f"{n}_bytes"]),
        # each group's bytes as one number, little-endian (not a MatMul: int8 steps would quantize it)
        helper.make_node("Mul", [f"{n}_bytes", c["byte_weights"]], [f"{n}_w"]),
        reduce,
        helper.make_node("Mul", [f"{n}_word", c["inv_shifts"]], [f"{n}_shifted"]),  # [N, codes + 1, G]
        helper.make_node("Floor", [f"{n}_shifted"], [f"{n}_q"]),
        helper.make_node("Slice", [f"{n}_q", c["lo"], c["end"], c["axis"]], [f"{n}_q_lo"]),
        helper.make_node("Slice", [f"{n}_q", c["hi"], c["past"], c["axis"]], [f"{n}_q_hi"]),
        helper.make_node("Mul", [f"{n}_q_hi", c["levels"]], [f"{n}_carry"]),
        helper.make_node("Sub", [f"{n}_q_lo", f"{n}_carry"], [f"{n}_codes"]),
        helper.make_node("Reshape", [f"{n}_codes", c["blocks"]], [f"{n}_cf"]),  # planes in column order
    ]
    for part in ("scale", "offset"):
        nodes += [
            helper.make_node("Gather", [c[part], ids], [f"{n}_{part}_rows"], axis=0),
            helper.make_node("Cast", [f"{n}_{part}_rows"], [f"{n}_{part}_f"], to=onnx.TensorProto.FLOAT),
            helper.make_node("Reshape", [f"{n}_{part}_f", c["per_block"]], [f"{n}_{part}_b"]),
        ]
    nodes += [
        helper.make_node("Mul", [f"{n}_cf", f"{n}_scale_b"], [f"{n}_scaled"]),
        helper.make_node("Add", [f"{n}_scaled", f"{n}_offset_b"], [f"{n}_decoded"]),
        helper.make_node("Shape", [ids], [f"{n}_ids_shape"]),
        helper.make_node("Concat", [f"{n}_ids_shape", c["cols"]], [f"{n}_out_shape"], axis=0),
        helper.make_node("Reshape", [f"{n}_decoded", f"{n}_out_shape"], [out]),
    ]
    return nodes, [numpy_helper.from_array(v, c[k]) for k, v in consts.items()]


def range_nodes(name: str, rows: int, opset: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """A node computing ``name`` = [0, 1, ..., rows - 1] (int64) from constants alone, so a
    runtime folds it, and whatever reads only it, at load; stored as 3 scalars, not a vector.
    ``Range`` exists from opset 11: an older graph is refused, naming it."""
    if opset < 11:
        raise ValueError(f"decode='table' needs ONNX opset >= 11 (Range), the graph has {opset}")
    consts = {"start": 0, "limit": rows, "delta": 1}
    inits = [numpy_helper.from_array(np.array(v, np.int64), f"{name}_{k}") for k, v in consts.items()]
    return [helper.make_node("Range", [f"{name}_{k}" for k in consts], [name])], inits


def decode_table_nodes(
    table: str, out: str, t: LowBitTable, opset: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and constants computing ``out`` = the whole float32 table ``t`` decoded (equal
    to ``dequantize(t)``) from constants alone, so a runtime folds them at load and lookups
    become plain Gathers of ``out`` (see the module notes)."""
    rng, consts = range_nodes(f"{table}_all_rows", t.shape[0], opset)
    nodes, more = decode_nodes(table, table, f"{table}_all_rows", out, t, opset)
    return [*rng, *nodes], consts + more
