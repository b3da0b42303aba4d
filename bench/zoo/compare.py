"""Side-by-side int8 benchmark of the zoo models: onnxruntime, NNCF and our artifacts, one run per model.

For each zoo model (``python -m bench.zoo.build``; ``/tmp/zoo`` by default) this builds,
into ``--work``, one ONNX file per variant and measures them all in the same process:

- ``fp32``: the model as given, the base of every ratio.
- ``fp32-control``: the same fp32 file again, in its own session: its speed-up shows the
  timing noise of the run (``--no-control`` leaves it out).
- ``ort-default``: ``onnxruntime.quantization.quantize_static`` with its own defaults: QDQ,
  per-tensor, MinMax and, in onnxruntime 1.32, **S8S8** (``activation_type`` defaults to
  ``QInt8``, not ``QUInt8``); no pre-processing.
- ``ort-pre-pc-rr``: ``quant_pre_process`` first (folds BatchNorm into the convs), then the
  same call with ``per_channel=True, reduce_range=True`` (still S8S8).
- ``ort-pre-pc-rr-u8``: the same with ``activation_type=QUInt8``: U8S8, onnxruntime's x86
  recommendation and what ``model_compression.quantize.onnx_int8`` uses.
- ``nncf-ptq``: ``nncf.quantize(model, nncf.Dataset(...), subset_size=200)``, defaults
  otherwise (preset, target device, fast bias correction, no model type).
- ``nncf-ac``: ``nncf.quantize_with_accuracy_control``, the same calibration; validation =
  top-1 agreement with fp32 on eval images 200..999 (one image an item, the metric per item
  returned too), ``max_drop=0.01``, ``DropType.ABSOLUTE``.
- ``nncf-ptq-pre``: an extra: ``quant_pre_process`` first (BatchNorm folded), then
  ``nncf-ptq``'s call, to tell NNCF's own placement from the unfolded BatchNorm's cost.
- ``nncf-ptq-pre-pt``: an extra: ``nncf-ptq-pre`` with per-tensor activation quantizers
  (``AdvancedQuantizationParameters(activations_quantization_params=
  QuantizationParameters(per_channel=False))``). NNCF's CPU/ANY hardware setup allows
  per-channel activation quantizers at depthwise-conv inputs; onnxruntime's QLinearConv
  takes only a per-tensor input scale, so such a conv (and the conv before it, whose output
  quantizer it is) stays fp32 between Q/DQ pairs.
- ``ours:NAME``: each ``--ours NAME=MODEL=/path/model.onnx`` whose MODEL is this model.

Calibration is the first 200 eval images, one image a calibration step, for every variant.
Accuracy is measured on images 200..1999 (the calibration images left out): top-1 against
the labels, top-1 agreement with fp32, and agreement per fp32-confidence bucket (fp32's
softmax max-probability in [0,0.5), [0.5,0.8), [0.8,0.95), [0.95,1.0], with counts).

Latency: every session comes from ``model_compression.runtime.session.make_session`` (the
production options: pinned threads, no spinning, ``ORT_ENABLE_ALL``). For each batch size
of ``--batches`` (inputs: the first B eval images), the variants are timed interleaved:
each round runs every variant for the same wall-clock slot (``--slot-ms``), the order
rotated by one each round, for ``--rounds`` rounds; a repeat's p50 per variant is over all
its calls in that repeat, its speed-up is fp32's p50 over the variant's. Three repeats
(``--repeats``): the tables give the median p50 and the speed-up's median [min-max].

Also reported: file bytes and ``gzip -9`` bytes (a transfer proxy) with their ratios to
fp32's, how many of the graph's weight-bearing ops (Conv, MatMul, Gemm, GRU, ...) read
their weight from a DequantizeLinear, and what onnxruntime actually runs after its graph
optimisations (int8 kernels such as QLinearConv vs fp32 Conv/MatMul/GRU, and the Q/DQ
nodes left over), taken from the optimised model a session with the same options writes.

Install NNCF beside the project's venv, never into it. nncf 3.4.0's other requirements
(networkx, numpy, scipy, scikit-learn, pydot, rich, psutil, safetensors, tabulate) are
already in the venv at versions it accepts; ``ninja`` serves its torch backend only, and
``openvino-telemetry`` is left out on purpose: without it NNCF sends no telemetry (with
it, NNCF sends usage events unless a consent file says no)::

    /work/main/.venv/bin/python -m pip install --no-deps --target .nncf nncf==3.4.0

Run from the repository root, one model a process on a shared machine (each takes 3-4
minutes on two busy cores); NNCF rows read "nncf not installed" without ``.nncf`` on the
path. ``--ours NAME=MODEL=PATH`` is repeatable and optional::

    for m in zoo-gru zoo-mobilenet zoo-vit; do
        PYTHONPATH=.:.nncf .venv/bin/python -m bench.zoo.compare $m --threads 2 --batches 1,64 \
            --out bench/zoo/results [--ours pipeline=$m=/path/to/$m/model.onnx]
    done

Writes ``OUT/compare-<model>.md`` and ``OUT/compare-<model>.json``, and prints the markdown.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import shutil
import statistics
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from model_compression.runtime.fingerprint import fingerprint
from model_compression.runtime.session import check_inputs, make_session

ZOO = Path("/tmp/zoo")
CALIB = 200  # images 0..199 calibrate every variant
AC_VALIDATION = (200, 1000)  # nncf-ac's validation images
BUCKETS = ((0.0, 0.5), (0.5, 0.8), (0.8, 0.95), (0.95, 1.0))
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8")
WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "GRU", "LSTM", "RNN")
INT8_KERNELS = ("MatMulInteger", "ConvInteger", "MatMulIntegerToFloat", "QGemm", "QAttention", "DynamicQuantizeMatMul")
FP32_KERNELS = ("Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm", "GRU", "LSTM", "RNN", "Attention")
NOT_INSTALLED = "nncf not installed"


@dataclass
class Variant:
    """One file under test: how it was made, and what was measured on it."""

    name: str
    how: str
    path: Path | None = None
    error: str | None = None
    build_s: float | None = None
    log: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


class Reader:
    """A CalibrationDataReader over single-image feeds (duck-typed: get_next/rewind)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds, self.i = feeds, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        self.i += 1
        return self.feeds[self.i - 1] if self.i <= len(self.feeds) else None

    def rewind(self) -> None:
        self.i = 0


class Capture(logging.Handler):
    """Keeps the messages of a logger (NNCF's) for the JSON."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def machine() -> dict[str, Any]:
    """Versions, CPU model and the ISA flags that matter for int8 kernels."""
    fp = fingerprint()
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("flags"):
                flags.update(line.partition(":")[2].split())
                break
    try:
        import nncf  # optional dependency

        nncf_version = nncf.__version__
    except Exception as e:
        nncf_version = f"not installed ({type(e).__name__})"
    return {
        "cpu": fp["cpu"],
        "cores": fp["cores"],
        "isa": {f: f in flags for f in ISA_FLAGS},
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "nncf": nncf_version,
    }


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip()}"


def build(variant: Variant, make: Callable[[], Path]) -> None:
    """Run ``make`` for ``variant``, recording the file, the seconds, or the error."""
    t0 = time.perf_counter()
    try:
        variant.path = make()
    except Exception as e:
        variant.error = NOT_INSTALLED if str(e) == NOT_INSTALLED else error_text(e)
        variant.log.append(traceback.format_exc())
        print(f"  {variant.name}: FAILED {variant.error[:300]}", file=sys.stderr)
    variant.build_s = round(time.perf_counter() - t0, 1)
    if variant.path is not None:
        print(f"  {variant.name}: built in {variant.build_s} s", file=sys.stderr)


def ort_static(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], **kwargs: Any) -> Path:
    from onnxruntime.quantization import quantize_static

    quantize_static(str(src), str(dst), Reader(feeds), **kwargs)
    return dst


def ort_pre(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst))
    return dst


def predict(path: Path, name: str, x: np.ndarray, threads: int, batch: int = 100) -> np.ndarray:
    """Logits of the ONNX file at ``path`` on ``x``, through a production session."""
    session = make_session(path, threads)
    return np.concatenate([session.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def nncf_build(
    src: Path,
    dst: Path,
    x: np.ndarray,
    name: str,
    ref_pred: np.ndarray,
    threads: int,
    accuracy_control: bool,
    per_tensor: bool = False,
) -> Path:
    """``nncf.quantize`` (or ``quantize_with_accuracy_control``) of ``src`` to ``dst``;
    ``per_tensor`` forbids per-channel activation quantizers."""
    try:
        import nncf  # optional dependency
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters
    except ImportError as e:
        raise ModuleNotFoundError(NOT_INSTALLED) from e

    def feed(i: int) -> dict[str, np.ndarray]:
        return {name: x[i : i + 1]}

    calibration = nncf.Dataset(list(range(CALIB)), feed)
    model = onnx.load(str(src))
    if not accuracy_control:
        advanced = None
        if per_tensor:
            advanced = AdvancedQuantizationParameters(
                activations_quantization_params=QuantizationParameters(per_channel=False)
            )
        quantized = nncf.quantize(model, calibration, subset_size=CALIB, advanced_parameters=advanced)
    else:
        scratch = dst.with_name(dst.stem + ".validating.onnx")

        def validate(candidate: onnx.ModelProto, items: Iterable[int]) -> tuple[float, list[float]]:
            idx = np.fromiter(items, dtype=np.int64)
            onnx.save(candidate, str(scratch))
            agree = predict(scratch, name, x[idx], threads).argmax(axis=1) == ref_pred[idx]
            return float(agree.mean()), agree.astype(float).tolist()

        validation = nncf.Dataset(list(range(*AC_VALIDATION)), feed)
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration, validation, validate, max_drop=0.01, subset_size=CALIB
        )
        scratch.unlink(missing_ok=True)
    onnx.save(quantized, str(dst))
    return dst


def graph_ops(path: Path) -> dict[str, Any]:
    """Per weight-bearing op type: how many nodes, and how many read their second input
    (the weight; for an activation MatMul, its right operand) from a DequantizeLinear."""
    model = onnx.load(str(path), load_external_data=False)
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    total: Counter[str] = Counter()
    quantized: Counter[str] = Counter()
    for n in model.graph.node:
        if n.op_type in WEIGHT_OPS:
            total[n.op_type] += 1
            quantized[n.op_type] += len(n.input) > 1 and producer.get(n.input[1]) == "DequantizeLinear"
    qdq = sum(1 for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    return {"weight_ops": {op: [quantized[op], total[op]] for op in total}, "qdq_nodes": qdq}


def runtime_ops(path: Path, threads: int, scratch: Path) -> dict[str, Any]:
    """The op types onnxruntime runs after optimising ``path`` with make_session's options."""
    opts = make_session(path, threads).get_session_options()
    opts.optimized_model_filepath = str(scratch)
    try:
        ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        ops = Counter(n.op_type for n in onnx.load(str(scratch), load_external_data=False).graph.node)
    except Exception as e:
        return {"error": error_text(e)}
    finally:
        scratch.unlink(missing_ok=True)
    int8 = sum(c for op, c in ops.items() if op.startswith("QLinear") or op in INT8_KERNELS)
    fp32 = sum(c for op, c in ops.items() if op in FP32_KERNELS)
    qdq = ops["QuantizeLinear"] + ops["DequantizeLinear"]
    return {"int8_kernels": int8, "fp32_kernels": fp32, "qdq": qdq, "ops": dict(sorted(ops.items()))}


def quality(logits: np.ndarray, ref: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Top-1 accuracy, agreement with fp32 ``ref`` logits, and agreement per fp32-confidence bucket."""
    e = np.exp(ref - ref.max(axis=1, keepdims=True))
    conf = (e / e.sum(axis=1, keepdims=True)).max(axis=1)
    agree = logits.argmax(axis=1) == ref.argmax(axis=1)
    buckets = []
    for lo, hi in BUCKETS:
        inside = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        n = int(inside.sum())
        buckets.append({"bucket": [lo, hi], "n": n, "agreement": float(agree[inside].mean()) if n else None})
    return {
        "accuracy": float((logits.argmax(axis=1) == y).mean()),
        "agreement": float(agree.mean()),
        "disagree": int((~agree).sum()),
        "n": len(y),
        "buckets": buckets,
    }


def time_interleaved(
    sessions: dict[str, ort.InferenceSession], feeds: dict[str, np.ndarray], rounds: int, repeats: int, slot_s: float
) -> dict[str, Any]:
    """Interleaved p50s: per repeat, ``rounds`` rounds in which every session runs for
    ``slot_s`` seconds in an order rotated by one each round; the first session is the
    reference of the speed-ups."""
    names = list(sessions)
    for s in sessions.values():
        check_inputs(s, feeds)
        for _ in range(5):
            s.run(None, feeds)
    p50s: dict[str, list[float]] = {n: [] for n in names}
    calls: dict[str, int] = {n: 0 for n in names}
    for _ in range(repeats):
        times: dict[str, list[float]] = {n: [] for n in names}
        for k in range(rounds):
            for n in names[k % len(names) :] + names[: k % len(names)]:
                s = sessions[n]
                s.run(None, feeds)  # untimed: the caches the previous variant left
                end = time.perf_counter() + slot_s
                while True:
                    t0 = time.perf_counter()
                    s.run(None, feeds)
                    t1 = time.perf_counter()
                    times[n].append((t1 - t0) * 1e3)
                    if t1 >= end and len(times[n]) >= 3 * (k + 1):
                        break
        for n in names:
            p50s[n].append(float(np.percentile(times[n], 50)))
            calls[n] += len(times[n])
    ref = names[0]
    out: dict[str, Any] = {}
    for n in names:
        ratios = [r / v for r, v in zip(p50s[ref], p50s[n], strict=True)]
        out[n] = {
            "p50_ms": statistics.median(p50s[n]),
            "p50_ms_repeats": p50s[n],
            "speedup": statistics.median(ratios),
            "speedup_min": min(ratios),
            "speedup_max": max(ratios),
            "speedup_repeats": ratios,
            "calls": calls[n],
        }
    return out


def compare(model: str, args: argparse.Namespace, ours: list[tuple[str, Path]]) -> dict[str, Any]:
    """Build, evaluate and time every variant of zoo model ``model``; return the JSON record."""
    t_start = time.perf_counter()
    src = args.zoo / model / "model.onnx"
    data = np.load(args.zoo / model / "eval.npz")
    x, y = np.ascontiguousarray(data["x"], dtype=np.float32), data["y"].astype(np.int64)
    work = args.work / model
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    name = make_session(src, args.threads).get_inputs()[0].name
    feeds = [{name: x[i : i + 1]} for i in range(CALIB)]
    ref_logits = predict(src, name, x, args.threads)
    ref_pred = ref_logits.argmax(axis=1)

    nncf_log = Capture()
    logging.getLogger("nncf").addHandler(nncf_log)
    fp32 = Variant("fp32", "the model as given", path=shutil.copyfile(src, work / "fp32.onnx"), build_s=0.0)
    variants = [fp32]
    if args.control:
        control = shutil.copyfile(src, work / "fp32-control.onnx")
        how = "fp32 again, in its own session: the timing's noise floor"
        variants.append(Variant("fp32-control", how, control, None, 0.0))
    print(f"{model}: building", file=sys.stderr)
    v = Variant("ort-default", "quantize_static defaults: QDQ, S8S8, per-tensor, MinMax; no pre-processing")
    build(v, lambda: ort_static(src, work / "ort-default.onnx", feeds))
    variants.append(v)
    pre = work / "preprocessed.onnx"
    for act, suffix in (("QInt8", ""), ("QUInt8", "-u8")):
        v = Variant(
            f"ort-pre-pc-rr{suffix}",
            f"quant_pre_process, then quantize_static per_channel, reduce_range, activations {act}",
        )

        def make(act: str = act, out: Path = work / f"{v.name}.onnx") -> Path:
            from onnxruntime.quantization import QuantType

            if not pre.exists():
                ort_pre(src, pre)
            activation = getattr(QuantType, act)
            return ort_static(pre, out, feeds, per_channel=True, reduce_range=True, activation_type=activation)

        build(v, make)
        variants.append(v)
    nncf_variants = (
        ("nncf-ptq", "nncf.quantize defaults, subset_size 200", False, False, False),
        (
            "nncf-ac",
            "nncf.quantize_with_accuracy_control: agreement with fp32 on images 200..999, max_drop 0.01 absolute",
            True,
            False,
            False,
        ),
        ("nncf-ptq-pre", "extra: quant_pre_process (BatchNorm folded), then nncf-ptq's call", False, True, False),
        (
            "nncf-ptq-pre-pt",
            "extra: nncf-ptq-pre with per-tensor activation quantizers (activations_quantization_params "
            "per_channel=False)",
            False,
            True,
            True,
        ),
    )
    for label, how, ac, on_pre, per_tensor in nncf_variants:
        v = Variant(label, how)
        start = len(nncf_log.lines)

        def make_nncf(
            ac: bool = ac, on_pre: bool = on_pre, per_tensor: bool = per_tensor, out: Path = work / f"{label}.onnx"
        ) -> Path:
            if on_pre and not pre.exists():
                ort_pre(src, pre)
            return nncf_build(pre if on_pre else src, out, x, name, ref_pred, args.threads, ac, per_tensor)

        build(v, make_nncf)
        v.log.extend(nncf_log.lines[start:])
        variants.append(v)
    logging.getLogger("nncf").removeHandler(nncf_log)
    for label, path in ours:
        v = Variant(f"ours:{label}", f"supplied artifact {path}")
        if path.is_file():
            v.path, v.build_s = path, 0.0
        else:
            v.error = f"no such file: {path}"
        variants.append(v)

    print(f"{model}: evaluating", file=sys.stderr)
    held = slice(CALIB, len(x))
    base_bytes = src.stat().st_size
    base_gz = len(gzip.compress(src.read_bytes(), 9))
    sessions: dict[str, ort.InferenceSession] = {}
    for v in variants:
        if v.path is None:
            continue
        try:
            raw = v.path.read_bytes()
            gz = len(gzip.compress(raw, 9))
            logits = predict(v.path, name, x[held], args.threads)
            v.metrics = {
                "bytes": len(raw),
                "ratio": base_bytes / len(raw),
                "gzip_bytes": gz,
                "gzip_ratio": base_gz / gz,
                "graph": graph_ops(v.path),
                "runtime": runtime_ops(v.path, args.threads, work / "_optimized.onnx"),
                "quality": quality(logits, ref_logits[held], y[held]),
                "latency": {},
            }
            sessions[v.name] = make_session(v.path, args.threads)
        except Exception as e:
            v.error = error_text(e)
            v.metrics = {}
    for b in args.batches:
        print(f"{model}: timing batch {b} ({len(sessions)} variants)", file=sys.stderr)
        timed = time_interleaved(sessions, {name: x[:b]}, args.rounds, args.repeats, args.slot_ms / 1e3)
        for v in variants:
            if v.name in timed:
                v.metrics["latency"][str(b)] = timed[v.name]
    return {
        "model": model,
        "source": str(src),
        "machine": machine(),
        "settings": {
            "threads": args.threads,
            "batches": args.batches,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "slot_ms": args.slot_ms,
            "calibration_images": [0, CALIB],
            "evaluation_images": [CALIB, len(x)],
            "nncf_ac_validation_images": list(AC_VALIDATION),
            "session": "model_compression.runtime.session.make_session",
        },
        "seconds": round(time.perf_counter() - t_start, 1),
        "variants": [
            {
                "name": v.name,
                "how": v.how,
                "path": str(v.path) if v.path else None,
                "error": v.error,
                "build_s": v.build_s,
                **v.metrics,
                "log": v.log,
            }
            for v in variants
        ],
    }


def _ops(g: dict[str, Any]) -> str:
    return ", ".join(f"{op} {q}/{t}" for op, (q, t) in g["weight_ops"].items())


def markdown(rec: dict[str, Any]) -> str:
    """The record as markdown: a header, the main table, the confidence-bucket table."""
    m, s = rec["machine"], rec["settings"]
    isa = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in m["isa"].items())
    lines = [
        f"# int8 side by side: {rec['model']}",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores); {isa}",
        f"- onnxruntime {m['onnxruntime']}, nncf {m['nncf']}, onnx {m['onnx']}, numpy {m['numpy']}, "
        f"python {m['python']}",
        f"- {s['threads']} intra-op threads (make_session), batches {s['batches']}; {s['repeats']} repeats x "
        f"{s['rounds']} rotated rounds x {s['slot_ms']} ms per variant per round; speed-up = fp32 p50 / p50, "
        "median [min-max] over repeats",
        f"- calibration: images 0..{CALIB - 1}; accuracy and agreement on images {s['evaluation_images'][0]}.."
        f"{s['evaluation_images'][1] - 1}; nncf-ac validates on images {AC_VALIDATION[0]}..{AC_VALIDATION[1] - 1}",
        f"- whole run {rec['seconds']} s",
        "",
    ]
    head = ["variant", "bytes", "x smaller", "gzip -9 bytes", "x smaller (gz)"]
    for b in s["batches"]:
        head += [f"p50 b{b} ms", f"speed-up b{b}"]
    head += ["top-1", "agree fp32", "int8 weights (file)", "run-time int8/fp32 kernels, Q/DQ", "build s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in rec["variants"]:
        if v["error"] or "quality" not in v:
            text = (v["error"] or "not measured").replace("\n", " ").replace("|", "/")
            lines.append(f"| {v['name']} | {text[:400]} |" + " |" * (len(head) - 2))
            continue
        row = [v["name"], f"{v['bytes']:,}", f"{v['ratio']:.2f}", f"{v['gzip_bytes']:,}", f"{v['gzip_ratio']:.2f}"]
        for b in s["batches"]:
            lat = v["latency"].get(str(b))
            if lat is None:
                row += ["", ""]
                continue
            row += [
                f"{lat['p50_ms']:.3f}",
                f"{lat['speedup']:.2f} [{lat['speedup_min']:.2f}-{lat['speedup_max']:.2f}]",
            ]
        q, rt = v["quality"], v["runtime"]
        run = "error" if "error" in rt else f"{rt['int8_kernels']}/{rt['fp32_kernels']}, {rt['qdq']}"
        row += [f"{q['accuracy']:.4f}", f"{q['agreement']:.4f}", _ops(v["graph"]), run, str(v["build_s"])]
        lines.append("| " + " | ".join(row) + " |")
    measured = [v for v in rec["variants"] if "quality" in v and not v["error"]]
    if measured:
        buckets = measured[0]["quality"]["buckets"]
        head = ["variant"] + [
            f"[{b['bucket'][0]},{b['bucket'][1]}{']' if b['bucket'][1] == 1.0 else ')'} n={b['n']}" for b in buckets
        ]
        lines += ["", "Agreement with fp32 per fp32 confidence (softmax max-prob) bucket:", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for v in measured:
            cells = [
                "-" if b["agreement"] is None else f"{b['agreement']:.4f} ({b['n'] - round(b['agreement'] * b['n'])})"
                for b in v["quality"]["buckets"]
            ]
            lines.append("| " + " | ".join([v["name"], *cells]) + " |")
        lines.append("")
        lines.append("(in brackets: images whose top-1 differs from fp32's)")
    lines += ["", "Variants:", ""]
    lines += [f"- `{v['name']}`: {v['how']}" for v in rec["variants"]]
    return "\n".join(lines) + "\n"


def parse_ours(values: list[str]) -> list[tuple[str, str, Path]]:
    out = []
    for value in values:
        parts = value.split("=", 2)
        if len(parts) != 3 or not all(parts):
            raise argparse.ArgumentTypeError(f"--ours takes NAME=MODEL=/path/model.onnx, got {value!r}")
        out.append((parts[0], parts[1], Path(parts[2])))
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m bench.zoo.compare", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="zoo model names (default: all in ZOO/zoo.json)")
    parser.add_argument("--zoo", type=Path, default=ZOO, help=f"the built zoo (default {ZOO})")
    parser.add_argument("--out", type=Path, default=Path("bench/zoo/results"), help="results folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/zoo-compare"), help="variant files (replaced)")
    parser.add_argument("--batches", default="1,64", help="batch sizes to time, comma-separated (default 1,64)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    parser.add_argument("--rounds", type=int, default=20, help="rotated rounds per repeat (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the interleaved timing (default 3)")
    parser.add_argument("--slot-ms", type=float, default=80.0, help="ms per variant per round (default 80)")
    parser.add_argument(
        "--no-control", dest="control", action="store_false", help="leave out the fp32-control timing row"
    )
    parser.add_argument(
        "--ours", action="append", default=[], metavar="NAME=MODEL=PATH", help="an extra artifact (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        args.batches = [int(b) for b in args.batches.split(",")]
        ours = parse_ours(args.ours)
    except (ValueError, argparse.ArgumentTypeError) as e:
        parser.error(str(e))
    if min(args.batches) < 1 or min(args.threads, args.rounds, args.repeats) < 1 or args.slot_ms <= 0:
        parser.error("batches, threads, rounds, repeats must be >= 1 and --slot-ms > 0")
    models = args.models or [m["name"] for m in json.loads((args.zoo / "zoo.json").read_text())["models"]]
    for label, model, _ in ours:
        if model not in models:
            print(f"note: --ours {label} is for {model}, which this run does not cover", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for model in models:
        rec = compare(model, args, [(label, path) for label, m, path in ours if m == model])
        (args.out / f"compare-{model}.json").write_text(json.dumps(rec, indent=2) + "\n")
        md = markdown(rec)
        (args.out / f"compare-{model}.md").write_text(md)
        print(md)
        records.append(rec)
    return records


if __name__ == "__main__":
    main()
