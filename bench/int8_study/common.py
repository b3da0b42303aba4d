"""Shared pieces of the int8 study: sessions, interleaved timing, quantization formats,
the MobileNet-style CNN, bias inspection and output-error metrics.

Nothing here measures anything by itself; the runnable scripts beside it do:

    bias_saturation     Q1: do int32 biases saturate, and which option prevents it
    op_formats          Q2: which int8 format is fastest per op type (and the per-machine profile)
    cnn_formats         Q2: the same question on a whole depthwise-separable CNN
    preprocess_effects  Q3: quant_pre_process, BatchNorm folding and session optimization level
    node_fallback       Q4: depthwise convs kept fp32 while the rest is int8

Timing rules (the machine has 2 shared cores): every session has 2 intra-op threads, 1
inter-op thread and ``session.intra_op.allow_spinning = 0`` (as
``model_compression.runtime.session.make_session`` sets them); the variants of one
comparison are interleaved in short bursts within one run; each comparison is repeated
(``--repeats``, default 3) with fresh sessions, the repeats of one comparison several
seconds to minutes apart; the tables give the median over repeats of each repeat's p50 and
the min-max over repeats.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

THREADS = 2
WORKDIR = Path(os.environ.get("INT8_STUDY_WORKDIR", "/tmp/int8_study"))
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
INT32_MAX = int(np.iinfo(np.int32).max)
INT32_MIN = int(np.iinfo(np.int32).min)
LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# A speed-up inside this band, or one whose repeats straddle 1.0, is reported as noise.
NOISE_BAND = (0.85, 1.15)


# --------------------------------------------------------------------------- machine


def cpu_info() -> dict[str, Any]:
    """CPU model, the int8-relevant ISA flags, and library versions."""
    flags: set[str] = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8"]
    import torch

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "isa": {f: f in flags for f in wanted},
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def isa_line(info: dict[str, Any]) -> str:
    have = [k for k, v in info["isa"].items() if v]
    lack = [k for k, v in info["isa"].items() if not v]
    return f"{info['cpu']}, {info['cores']} cores; has {', '.join(have) or '-'}; lacks {', '.join(lack) or '-'}"


# --------------------------------------------------------------------------- sessions


def session(
    path: str | Path, level: str = "all", dump: str | Path | None = None, disabled: Sequence[str] = ()
) -> ort.InferenceSession:
    """A CPU session like ``make_session(path, threads=2)``, with a chosen graph
    optimization level, optionally some ORT graph transformers disabled by name (e.g.
    ``WeightBiasQuantization``), and optionally the optimized graph written to ``dump``."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = LEVELS[level]
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    if dump is not None:
        opts.optimized_model_filepath = str(dump)
    kw: dict[str, Any] = {"disabled_optimizers": list(disabled)} if disabled else {}
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"], **kw)


# input positions of the activation and weight zero points of the integer kernels
_QOPS = {"QLinearConv": (2, 5), "QLinearMatMul": (2, 5), "QGemm": (2, 5), "ConvInteger": (2, 3)}
_QOPS["MatMulInteger"] = (2, 3)
_DT = {2: "u8", 3: "s8"}


def optimized_ops(path: str | Path, level: str = "all", disabled: Sequence[str] = ()) -> Counter[str]:
    """Op types of the graph onnxruntime actually runs (after its graph optimizations);
    integer kernels carry their activation and weight types, e.g. ``QLinearConv[u8s8]``."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "opt.onnx"
        session(path, level, dump=out, disabled=disabled)
        m = onnx.load(str(out))
    types = {t.name: t.data_type for t in m.graph.initializer}
    ops: Counter[str] = Counter()
    for n in m.graph.node:
        name = n.op_type
        if name in _QOPS:
            zx, zw = (n.input[i] if len(n.input) > i else "" for i in _QOPS[name])
            # a zero point that is not an initializer comes from DynamicQuantizeLinear: uint8
            name += f"[{_DT.get(types.get(zx, 2), '?')}{_DT.get(types.get(zw, 0), '?')}]"
        ops[name] += 1
    return ops


def ops_summary(ops: Counter[str], keep: Iterable[str] | None = None) -> str:
    """``QLinearConv×3 DequantizeLinear×1`` style summary, most frequent first."""
    items = [(k, v) for k, v in ops.most_common() if keep is None or k.split("[")[0] in set(keep)]
    return " ".join(f"{k}×{v}" for k, v in items)


def load_line() -> str:
    """The 1/5/15-minute load averages: other work shares these 2 cores."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def feeds_for(path: str | Path, x: np.ndarray) -> dict[str, np.ndarray]:
    name = onnx.load(str(path), load_external_data=False).graph.input[0].name
    return {name: x}


# --------------------------------------------------------------------------- timing


def _burst(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], budget_s: float, max_calls: int) -> list[float]:
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < max_calls and (len(out) < 2 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def time_interleaved(
    variants: dict[str, tuple[ort.InferenceSession, dict[str, np.ndarray]]],
    rounds: int = 5,
    budget_s: float = 0.1,
    max_calls: int = 40,
    warmup: int = 3,
) -> dict[str, float]:
    """p50 latency (ms) of each variant, timed in ``rounds`` rounds of short bursts; the
    order of the variants rotates each round so none always runs first or last."""
    names = list(variants)
    for n in names:
        sess, feeds = variants[n]
        for _ in range(warmup):
            sess.run(None, feeds)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            times[n] += _burst(*variants[n], budget_s, max_calls)
    return {n: float(np.median(t)) for n, t in times.items()}


@dataclass
class Group:
    """One comparison: variants (name -> (model path, input array, optimization level[,
    ORT transformers to disable])) timed against each other; ``base`` is the variant
    speed-ups are relative to."""

    label: str
    variants: dict[str, tuple]
    base: str = "fp32"
    p50s: dict[str, list[float]] = field(default_factory=dict)

    def speedups(self, name: str) -> list[float]:
        return [b / v for b, v in zip(self.p50s[self.base], self.p50s[name], strict=True)]


def run_groups(groups: Sequence[Group], repeats: int, log: Callable[[str], None] = print, **timing: Any) -> None:
    """Time every group ``repeats`` times: the outer loop is the repeat, so the repeats of
    one comparison are separated by all the other comparisons."""
    for rep in range(repeats):
        t0 = time.perf_counter()
        for g in groups:
            sessions = {}
            for name, (path, x, level, *disabled) in g.variants.items():
                sessions[name] = (session(path, level, disabled=disabled[0] if disabled else ()), feeds_for(path, x))
            for name, p50 in time_interleaved(sessions, **timing).items():
                g.p50s.setdefault(name, []).append(p50)
            del sessions
        log(f"  repeat {rep + 1}/{repeats}: {time.perf_counter() - t0:.1f} s")


def med_range(values: Sequence[float], fmt: str = "{:.3g}") -> str:
    return f"{fmt.format(np.median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def verdict(speedups: Sequence[float]) -> str:
    """faster / slower / noise, from the median speed-up and whether every repeat agrees."""
    m = float(np.median(speedups))
    if m >= NOISE_BAND[1] and min(speedups) > 1.0:
        return "faster"
    if m <= NOISE_BAND[0] and max(speedups) < 1.0:
        return "slower"
    return "≈ noise"


def group_table(groups: Sequence[Group], ops: dict[tuple[str, str], str] | None = None) -> str:
    """Markdown: one row per (group, variant) with p50, speed-up vs the base, verdict."""
    head = "| comparison | variant | p50 ms, median [min–max] | speed-up vs base | verdict |"
    lines = [head, "|---|---|---|---|---|"]
    if ops:
        lines = [head + " kernels after ORT optimization |", "|---|---|---|---|---|---|"]
    for g in groups:
        for name in g.variants:
            sp = g.speedups(name)
            row = f"| {g.label} | {name} | {med_range(g.p50s[name])} | {med_range(sp, '{:.2f}')}× | "
            row += ("base" if name == g.base else verdict(sp)) + " |"
            if ops:
                row += f" {ops.get((g.label, name), '')} |"
            lines.append(row)
    return "\n".join(lines)


def save_groups(path: Path, info: dict, args: Any, groups: Sequence[Group], **extra: Any) -> None:
    """The raw per-repeat p50s of ``groups`` with the CPU, the arguments and ``extra``."""
    data = {"cpu": info, "args": vars(args), "groups": [{"label": g.label, "p50s": g.p50s} for g in groups]}
    save_json(path, {**data, **extra})


def save_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=str))


# --------------------------------------------------------------------------- quantization


class ListReader:
    """A CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds, self.i = feeds, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


# Formats compared. U8S8 = uint8 activations, int8 weights; S8S8 = both int8.
FORMATS = ("fp32", "qdq_u8s8", "qdq_s8s8", "qop_u8s8", "qop_s8s8", "dynamic")


def quantize(
    src: Path,
    dst: Path,
    fmt: str,
    calib: list[np.ndarray],
    per_channel: bool = True,
    reduce_range: bool = True,
    nodes_to_exclude: list[str] | None = None,
    op_types: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    weight_type: str = "int8",
) -> Path:
    """Quantize ``src`` to ``dst`` in format ``fmt`` (one of FORMATS other than fp32)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    wt = QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8
    dst.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dynamic":
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=wt,
            nodes_to_exclude=nodes_to_exclude,
            op_types_to_quantize=op_types,
            extra_options=extra or {},
        )
        return dst
    kind, acts = fmt.split("_")
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    quantize_static(
        str(src),
        str(dst),
        ListReader([{name: x} for x in calib]),
        quant_format=QuantFormat.QDQ if kind == "qdq" else QuantFormat.QOperator,
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8 if acts.startswith("u8") else QuantType.QInt8,
        weight_type=wt,
        nodes_to_exclude=nodes_to_exclude,
        op_types_to_quantize=op_types,
        extra_options=extra or {},
        calibration_providers=["CPUExecutionProvider"],
    )
    return dst


def preprocess(src: Path, dst: Path, **kw: Any) -> Path:
    """onnxruntime's ``quant_pre_process``: shape inference + ORT basic optimization
    (which folds BatchNorm into Conv)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), **kw)
    return dst


# --------------------------------------------------------------------------- bias inspection


@dataclass(frozen=True)
class BiasInfo:
    """One int32 bias initializer of a quantized graph."""

    name: str
    consumer: str
    channels: int
    max_abs_q: int
    clipped: int  # entries equal to int32 max or min: np.clip saturated them
    near_limit: int  # entries with |q| > 2^30
    dequant_err_lsb: float | None  # max |q*scale - b| / scale against the fp32 bias, if known (≤ 0.5 when exact)


def int32_biases(quantized: Path, fp32: Path | None = None) -> list[BiasInfo]:
    """Every int32 bias of ``quantized`` (QDQ: the DequantizeLinear of an int32
    initializer; QOperator: input 8 of QLinearConv, input 6 of com.microsoft QGemm), with
    its saturation counts and, given the fp32 model it came from, the worst relative error
    of the dequantized bias."""
    from onnx import numpy_helper

    m = onnx.load(str(quantized))
    inits = {t.name: t for t in m.graph.initializer}
    ref: dict[str, np.ndarray] = {}
    if fp32 is not None:
        ref = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(fp32)).graph.initializer}

    def arr(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    found: list[tuple[str, str, np.ndarray | None]] = []  # (bias name, consumer, scale)
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type == 6:
            found.append((n.input[0], n.name, arr(n.input[1])))
        elif n.op_type == "QLinearConv" and len(n.input) > 8 and n.input[8]:
            xs, ws = arr(n.input[1]), arr(n.input[4])
            found.append((n.input[8], n.name, None if xs is None or ws is None else xs * ws))
        elif n.op_type == "QGemm" and len(n.input) > 6 and n.input[6]:
            xs, ws = arr(n.input[1]), arr(n.input[4])
            found.append((n.input[6], n.name, None if xs is None or ws is None else xs * ws))
    out = []
    for name, consumer, scale in found:
        q = arr(name)
        if q is None or q.dtype != np.int32:
            continue
        q64 = q.astype(np.int64)
        err = None
        orig = ref.get(name.removesuffix("_quantized"))
        if orig is not None and scale is not None:
            s64 = np.broadcast_to(np.asarray(scale, dtype=np.float64), q64.shape)
            err = float(np.max(np.abs(q64 * s64 - orig) / s64))
        out.append(
            BiasInfo(
                name=name,
                consumer=consumer,
                channels=int(q.size),
                max_abs_q=int(np.abs(q64).max()),
                clipped=int(np.sum((q64 == INT32_MAX) | (q64 == INT32_MIN))),
                near_limit=int(np.sum(np.abs(q64) > 2**30)),
                dequant_err_lsb=err,
            )
        )
    return out


# --------------------------------------------------------------------------- outputs


def output_error(ref: np.ndarray, out: np.ndarray, labels: np.ndarray | None = None) -> dict[str, float]:
    """max |Δ|, mean and min per-example cosine, top-1 agreement (and accuracy, given labels)."""
    r, o = ref.reshape(len(ref), -1).astype(np.float64), out.reshape(len(out), -1).astype(np.float64)
    cos = np.sum(r * o, 1) / np.maximum(np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1), 1e-30)
    res = {
        "max_abs": float(np.max(np.abs(r - o))),
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "top1_agree": float(np.mean(r.argmax(1) == o.argmax(1))),
    }
    if labels is not None:
        res["accuracy"] = float(np.mean(o.argmax(1) == labels))
    return res


def run_model(path: Path, x: np.ndarray, batch: int = 256, disabled: Sequence[str] = ()) -> np.ndarray:
    s = session(path, disabled=disabled)
    feeds_name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {feeds_name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


# --------------------------------------------------------------------------- data and the CNN


def fashion(split: str, n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` normalized Fashion-MNIST images (N, 1, 28, 28) float32 and their labels."""
    from model_compression.datasets.fashion_mnist import load_split, normalize

    images, labels = load_split(FASHION_DIR, split)
    return normalize(images[offset : offset + n]), labels[offset : offset + n]


def build_cnn(width: float = 1.0, classes: int = 10):  # -> torch.nn.Module
    """MobileNet-v1-style CNN for 1x28x28: a 3x3 stem then nine depthwise-separable blocks
    (dw3x3-BN-ReLU, pw1x1-BN-ReLU), global average pool, linear. width=1.0: 1.08 M params."""
    from torch import nn

    spec = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] + [(512, 512, 1)] * 3

    def c(n: int) -> int:
        return max(8, round(n * width))

    layers: list[nn.Module] = [nn.Conv2d(1, c(32), 3, 1, 1, bias=False), nn.BatchNorm2d(c(32)), nn.ReLU()]
    for cin, cout, stride in spec:
        layers += [
            nn.Conv2d(c(cin), c(cin), 3, stride, 1, groups=c(cin), bias=False),
            nn.BatchNorm2d(c(cin)),
            nn.ReLU(),
            nn.Conv2d(c(cin), c(cout), 1, bias=False),
            nn.BatchNorm2d(c(cout)),
            nn.ReLU(),
        ]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c(512), classes)]
    return nn.Sequential(*layers)


def trained_cnn(
    width: float = 1.0,
    train_n: int = 12000,
    epochs: int = 1,
    seed: int = 0,
    log: Callable = print,
    hook: Callable | None = None,
    tag: str = "",
):
    """``build_cnn(width)`` briefly trained on Fashion-MNIST (cached in WORKDIR), eval mode.
    ``hook(model)``, if given, runs before training and after every optimizer step (e.g. to
    keep a channel dead); ``tag`` names it in the cache key."""
    import torch

    cache = WORKDIR / f"cnn_w{width}_n{train_n}_e{epochs}_s{seed}{tag}.pt"
    torch.manual_seed(seed)
    model = build_cnn(width)
    if hook is not None:
        hook(model)
    if cache.exists():
        model.load_state_dict(torch.load(cache))
        return model.eval()
    torch.set_num_threads(THREADS)
    x, y = fashion("train", train_n)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    t0 = time.perf_counter()
    model.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(train_n, generator=g).split(128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
            if hook is not None:
                hook(model)
    model.eval()
    log(f"  trained width={width} on {train_n} images × {epochs} epoch(s) in {time.perf_counter() - t0:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model


def random_bn_cnn(width: float = 1.0, seed: int = 0, n: int = 512):
    """``build_cnn(width)`` with random (Kaiming) weights and BatchNorm statistics measured
    on ``n`` Fashion-MNIST training images, eval mode: realistic activation ranges for
    timing without the minutes of CPU training (depthwise backward is slow here)."""
    import torch

    torch.manual_seed(seed)
    model = build_cnn(width)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None  # cumulative average over the batches below
    x, _ = fashion("train", n, offset=40000)
    model.train()
    with torch.no_grad():
        for i in range(0, n, 128):
            model(torch.from_numpy(x[i : i + 128]))
    return model.eval()


def export(model, path: Path, fold: bool = True, shape: tuple[int, ...] = (1, 1, 28, 28)) -> Path:
    """Legacy (dynamo=False) opset-17 export with a dynamic batch. fold=True lets the
    exporter fold BatchNorm into Conv (its default); fold=False keeps BatchNormalization
    nodes (do_constant_folding=False), so quant_pre_process has something to fold."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.zeros(shape),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
        do_constant_folding=fold,
    )
    return path


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def quiet() -> None:
    """Silence the quantizer's per-model warnings and torch's export chatter."""
    import logging
    import warnings

    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
