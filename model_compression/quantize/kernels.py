"""Kernel profile: how fast int8 runs per op class and format on one machine, against fp32.

Quantization must not time anything while it builds (identical inputs give identical
bytes), yet whether int8 pays depends on the CPU. So the timings live in a separate
profile, measured once per hardware pool (``python -m tasks kernels <pool>``) and read by
the int8 step as an input: a new profile re-quantizes visibly, an unchanged one never.

Each op class is timed as a short chain of three such ops, so that the Q/DQ of the chain's
edges is amortised as inside a network, for every int8 format against fp32, interleaved
round by round (a noisy neighbour slows every variant alike). Convolution classes are also
timed *in context*: pointwise → X → pointwise with X kept in float between int8
neighbours, against all int8. An isolated kernel timing would mislead: a depthwise conv
whose int8 kernel is slower still costs less in int8 than the Q/DQ and layout changes of a
float island (measured: ``bench/int8_study/FINDINGS.md``, Q4).

The decisions (``choose``) are deterministic functions of the profile:

- the format: QDQ U8S8 unless another format is faster by more than ``NOISE`` over the op
  classes the graph holds (geometric mean);
- the classes kept in float: those whose float island beats all-int8 in context, or whose
  int8 chain is slower than fp32, by more than ``NOISE``.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model_compression.runtime.cpu import cpu

FORMATS = ("qdq_u8s8", "qdq_s8s8", "qop_u8s8")  # (format, activations x weights)
DEFAULT_FORMAT = "qdq_u8s8"
NOISE = 1.15  # speed ratios within 1/1.15..1.15 are noise on a shared 2-core VM
CLASSES = ("conv_depthwise", "conv_pointwise", "conv_dense", "matmul", "gemm")
PROFILE_VERSION = 1


@dataclass(frozen=True)
class KernelProfileConfig:
    """How to measure a profile.

    Attributes:
        batches: batch sizes timed (default (1, 32): single requests and a serving batch).
        repeats: independent repeats with fresh sessions; the median is kept (default 3).
        rounds: interleaved rounds per repeat (default 4).
        budget_s: seconds of calls per variant per round (default 0.05).
        threads: intra-op threads, as serving runs (default 2).
        seed: weights and inputs (default 0).
    """

    batches: tuple[int, ...] = (1, 32)
    repeats: int = 3
    rounds: int = 4
    budget_s: float = 0.05
    threads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"KernelProfileConfig.batches must be positive batch sizes, got {self.batches}")
        if self.repeats < 1 or self.rounds < 1:
            raise ValueError(f"KernelProfileConfig repeats and rounds must be >= 1, got {self.repeats}, {self.rounds}")
        if self.budget_s <= 0 or self.threads < 1:
            raise ValueError(
                f"KernelProfileConfig budget_s must be > 0 s and threads >= 1, got {self.budget_s}, {self.threads}"
            )


# -- the chains ------------------------------------------------------------------------------


def _conv(name: str, x: str, cin: int, cout: int, k: int, group: int, rng: np.random.Generator) -> tuple[list, list]:
    w = rng.normal(0, (2.0 / (cin // group * k * k)) ** 0.5, (cout, cin // group, k, k)).astype(np.float32)
    b = rng.normal(0, 0.1, cout).astype(np.float32)
    inits = [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
    nodes = [
        helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.c"], name=name, group=group,
                         kernel_shape=[k, k], pads=[k // 2] * 4),
        helper.make_node("Relu", [f"{name}.c"], [f"{name}.y"], name=f"{name}.relu"),
    ]  # fmt: skip
    return nodes, inits


def _linear(name: str, x: str, cin: int, cout: int, op: str, rng: np.random.Generator) -> tuple[list, list]:
    w = rng.normal(0, (2.0 / cin) ** 0.5, (cin, cout)).astype(np.float32)
    b = rng.normal(0, 0.1, cout).astype(np.float32)
    inits = [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
    if op == "Gemm":
        nodes = [helper.make_node("Gemm", [x, f"{name}.w", f"{name}.b"], [f"{name}.c"], name=name)]
    else:
        nodes = [helper.make_node("MatMul", [x, f"{name}.w"], [f"{name}.m"], name=name),
                 helper.make_node("Add", [f"{name}.m", f"{name}.b"], [f"{name}.c"], name=f"{name}.add")]  # fmt: skip
    nodes.append(helper.make_node("Relu", [f"{name}.c"], [f"{name}.y"], name=f"{name}.relu"))
    return nodes, inits


# (input shape without batch, layers): a layer is (class, cin, cout)
_CONV = {"conv_depthwise": (3, "dw"), "conv_pointwise": (1, "pw"), "conv_dense": (3, "dense")}


def chain(kind: str, middle_float: bool = False, seed: int = 0) -> tuple[onnx.ModelProto, tuple[int, ...], list[str]]:
    """The timing graph of op class ``kind``: ``(model, input shape without batch, names of
    the nodes to keep in float for the in-context variant)``. Convolution classes in context
    (``middle_float``) are pointwise → ``kind`` → pointwise."""
    rng = np.random.default_rng(seed)
    nodes: list = []
    inits: list = []
    x = "x"
    if kind in _CONV:
        c = 64
        shape: tuple[int, ...] = (c, 14, 14)
        layers = ["conv_pointwise", kind, "conv_pointwise"] if middle_float else [kind] * 3
        for i, layer in enumerate(layers):
            lk = _CONV[layer][0]
            group = c if layer == "conv_depthwise" else 1
            n, w = _conv(f"l{i}", x, c, c, lk, group, rng)
            nodes, inits, x = nodes + n, inits + w, f"l{i}.y"
        middle = ["l1"] if middle_float else []
        out_shape = shape
    elif kind in ("matmul", "gemm"):
        op = "MatMul" if kind == "matmul" else "Gemm"
        shape = (16, 128) if kind == "matmul" else (128,)
        dims = [128, 256, 256, 128]
        for i in range(3):
            n, w = _linear(f"l{i}", x, dims[i], dims[i + 1], op, rng)
            nodes, inits, x = nodes + n, inits + w, f"l{i}.y"
        middle = []
        out_shape = shape
    else:
        raise ValueError(f"unknown op class {kind!r}; known: {CLASSES}")
    graph = helper.make_graph(
        nodes, f"chain_{kind}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", *out_shape])], initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, shape, middle


# -- measuring -------------------------------------------------------------------------------


def _quantized(src: Path, dst: Path, fmt: str, feeds: list[dict[str, np.ndarray]], exclude: list[str]) -> Path:
    from model_compression.quantize.onnx_int8 import OnnxInt8Config, quantize

    qformat, act = fmt_fields(fmt)
    cfg = OnnxInt8Config(mode="static", reduce_range=True, quant_format=qformat, activation_type=act,  # type: ignore[arg-type]
                         exclude_nodes=tuple(exclude))  # fmt: skip
    return quantize(src, dst, cfg, feeds)


def fmt_fields(fmt: str) -> tuple[str, str]:
    """``(quant_format, activation_type)`` of a profile format name such as ``qdq_u8s8``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown int8 format {fmt!r}; known: {FORMATS}")
    qformat, kernel = fmt.split("_")
    return ("qdq" if qformat == "qdq" else "qoperator"), ("uint8" if kernel.startswith("u8") else "int8")


def _time(paths: dict[str, Path], shape: tuple[int, ...], batch: int, cfg: KernelProfileConfig) -> dict[str, float]:
    """p50 seconds per call of each model, interleaved round by round (order rotated)."""
    from model_compression.runtime.session import make_session

    sessions = {v: make_session(p, cfg.threads) for v, p in paths.items()}
    x = {"x": np.random.default_rng(cfg.seed).normal(size=(batch, *shape)).astype(np.float32)}
    calls: dict[str, list[float]] = {v: [] for v in paths}
    order = list(paths)
    for v in order:  # warm up: first calls allocate
        for _ in range(3):
            sessions[v].run(None, x)
    for r in range(cfg.rounds):
        for v in order[r % len(order) :] + order[: r % len(order)]:
            end = time.perf_counter() + cfg.budget_s
            while True:
                t0 = time.perf_counter()
                sessions[v].run(None, x)
                t1 = time.perf_counter()
                calls[v].append(t1 - t0)
                if t1 >= end:
                    break
    return {v: float(np.median(c)) for v, c in calls.items()}


def _variants(kind: str, work: Path, cfg: KernelProfileConfig) -> tuple[dict[str, Path], tuple[int, ...]]:
    model, shape, _ = chain(kind, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    feeds = [{"x": rng.normal(size=(4, *shape)).astype(np.float32)} for _ in range(4)]
    paths = {"fp32": work / f"{kind}.onnx"}
    onnx.save(model, paths["fp32"])
    for fmt in FORMATS:
        paths[fmt] = _quantized(paths["fp32"], work / f"{kind}.{fmt}.onnx", fmt, feeds, [])
    if kind in _CONV:
        ctx, _, middle = chain(kind, middle_float=True, seed=cfg.seed)
        onnx.save(ctx, work / f"{kind}.ctx.onnx")
        src = work / f"{kind}.ctx.onnx"
        paths["context_int8"] = _quantized(src, work / f"{kind}.ctx.int8.onnx", DEFAULT_FORMAT, feeds, [])
        paths["context_float"] = _quantized(src, work / f"{kind}.ctx.float.onnx", DEFAULT_FORMAT, feeds, middle)
    return paths, shape


def measure_class(kind: str, work: Path, cfg: KernelProfileConfig) -> dict[str, Any]:
    """One op class: fp32 p50 (ms) and each format's speed-up over fp32 per batch, plus for
    convolutions the speed-up of a float island over all-int8 in context; medians of
    ``cfg.repeats`` repeats, rounded to 3 digits."""
    paths, shape = _variants(kind, work, cfg)
    out: dict[str, Any] = {"fp32_ms": {}, "speedup": {f: {} for f in FORMATS}}
    if "context_int8" in paths:
        out["float_island_speedup"] = {}
    for batch in cfg.batches:
        reps = [_time(paths, shape, batch, cfg) for _ in range(cfg.repeats)]
        b = str(batch)
        out["fp32_ms"][b] = round(float(np.median([r["fp32"] for r in reps])) * 1e3, 4)
        for f in FORMATS:
            out["speedup"][f][b] = round(float(np.median([r["fp32"] / r[f] for r in reps])), 3)
        if "context_int8" in paths:
            island = [r["context_int8"] / r["context_float"] for r in reps]
            out["float_island_speedup"][b] = round(float(np.median(island)), 3)
    return out


def measure(cfg: KernelProfileConfig, work: Path, classes: Iterable[str] = CLASSES) -> dict[str, Any]:
    """A profile of this machine: every op class of ``classes`` (files go under ``work``)."""
    import onnxruntime

    work.mkdir(parents=True, exist_ok=True)
    return {
        "version": PROFILE_VERSION,
        "machine": machine(),
        "onnxruntime": onnxruntime.__version__,
        "config": {
            "batches": list(cfg.batches),
            "repeats": cfg.repeats,
            "rounds": cfg.rounds,
            "budget_s": cfg.budget_s,
            "threads": cfg.threads,
        },
        "classes": {k: measure_class(k, work, cfg) for k in classes},
    }


def machine() -> dict[str, Any]:
    """The CPU model and the instruction-set flags int8 kernels depend on."""
    model, flags = cpu()
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd")
    return {"cpu": model, "arch": platform.machine(), "isa": sorted(f for f in wanted if f in flags)}


# -- deciding --------------------------------------------------------------------------------


def node_classes(model: onnx.ModelProto) -> dict[str, str]:
    """The op class of every weighted node of ``model`` (name -> class); MatMuls between two
    activations and ops outside ``CLASSES`` are left out."""
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    out: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in shapes:
            w = shapes[node.input[1]]
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if len(w) < 3:
                continue
            if group > 1 and group == w[0] and w[1] == 1:
                out[node.name] = "conv_depthwise"
            elif all(d == 1 for d in w[2:]) and group == 1:
                out[node.name] = "conv_pointwise"
            else:
                out[node.name] = "conv_dense"
        elif node.op_type in ("MatMul", "Gemm") and any(i in shapes for i in node.input[:2]):
            out[node.name] = "matmul" if node.op_type == "MatMul" else "gemm"
    return out


def _geomean(values: Iterable[float]) -> float:
    vals = [v for v in values if v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else 1.0


def choose(profile: dict[str, Any], model: onnx.ModelProto) -> dict[str, Any]:
    """What ``profile`` says for ``model``: ``{"format", "float_classes", "float_nodes",
    "why"}``, a deterministic function of the profile and the graph."""
    classes = node_classes(model)
    present = sorted(set(classes.values()) & set(profile.get("classes", {})))
    measured = {k: profile["classes"][k] for k in present}
    score = {f: _geomean(s for k in present for s in measured[k]["speedup"][f].values()) for f in FORMATS}
    fmt = DEFAULT_FORMAT
    best = max(FORMATS, key=lambda f: score[f])
    if score[best] > score[DEFAULT_FORMAT] * NOISE:
        fmt = best
    why: dict[str, str] = {}
    for k in present:
        island = _geomean(measured[k].get("float_island_speedup", {}).values())
        alone = _geomean(measured[k]["speedup"][fmt].values())
        if island > NOISE:
            why[k] = f"a float island is {island:.2f}x faster than int8 between int8 neighbours"
        elif "float_island_speedup" not in measured[k] and alone < 1 / NOISE:
            why[k] = f"int8 runs at {alone:.2f}x of fp32"
    return {
        "format": fmt,
        "format_speedups": {f: round(score[f], 3) for f in FORMATS},
        "float_classes": why,
        "float_nodes": sorted(n for n, k in classes.items() if k in why),
    }
