"""Q2 per op type: which int8 format is fastest on this machine, against fp32.

python -m bench.int8_study.op_formats [--quick] [--repeats 3] [--only dw,pw,dense,matmul,gemm]

Few-op ONNX graphs built with onnx.helper (opset 17, dynamic batch), each a short chain so
the Q/DQ of the graph's float input and output is amortised as it is inside a network:

    dw      3 x (depthwise 3x3 Conv + Relu), C channels at HxW
    pw      3 x (pointwise 1x1 Conv C->C + Relu)
    dense   3 x (dense 3x3 Conv C->C + Relu)
    matmul  transformer FFN: [N,S,192] MatMul [192,768] + Add, Relu, MatMul [768,192] + Add
    gemm    the same two layers as Gemm on [N,192]

each at batch 1 and 32, in the formats fp32, static QDQ U8S8 and S8S8, static QOperator
(QLinearConv/QLinearMatMul/QGemm) U8S8 and S8S8, and dynamic (ConvInteger/MatMulInteger with
DynamicQuantizeLinear). Static formats: per-channel int8 weights, reduce_range=True (the
repo's portable default; it changes accuracy on non-VNNI CPUs, not the kernel), MinMax on
8 random batches. The table gives p50 (median over repeats [min-max]), the speed-up over
fp32 timed interleaved in the same run, a verdict (noise band 0.85-1.15x, and every
repeat on the same side of 1.0), and the kernels ORT actually runs after its graph
optimizations.

``--quick`` is the per-machine kernel profile proposed in FINDINGS.md: one shape per op
type, batches 1 and 32, the five formats that are not known losers; it prints its wall time.
``--matrix`` prints, from the saved results of the full runs, one row per comparison and
one column per format (median speed-up [min-max]; **bold** = faster, ~ = within noise).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench.int8_study import common as C

OUT = C.WORKDIR / "ops"
FULL = {
    "dw": [(64, 28), (256, 7)],
    "pw": [(64, 28), (256, 7)],
    "dense": [(32, 28), (128, 7)],
    "matmul": [16, 128],
    "gemm": [192],
}
QUICK = {"dw": [(128, 14)], "pw": [(128, 14)], "dense": [(64, 14)], "matmul": [128], "gemm": [192]}
QUICK_FORMATS = ("fp32", "qdq_u8s8", "qdq_s8s8", "qop_u8s8", "dynamic")
# Among formats within 10 % of the best speed-up, the first of these wins: QDQ is the
# portable representation (other EPs read it), uint8 activations are x86's fast path.
PREFERENCE = ("qdq_u8s8", "qop_u8s8", "dynamic", "qdq_s8s8", "qop_s8s8")


def decide(g: C.Group) -> tuple[str, float]:
    """The format a per-machine profile would pick for this op/shape/batch: the preferred
    one among those clearly faster than fp32 (verdict "faster") and within 10 % of the
    best; fp32 when none is clearly faster."""
    fast = {
        f: float(np.median(g.speedups(f))) for f in g.variants if f != "fp32" and C.verdict(g.speedups(f)) == "faster"
    }
    if not fast:
        return "fp32", 1.0
    best = max(fast.values())
    pick = next(f for f in PREFERENCE if f in fast and fast[f] >= 0.9 * best)
    return pick, fast[pick]


def _model(nodes, inits, x_shape, y_shape) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(a.astype(np.float32), n) for n, a in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def conv_chain(kind: str, c: int, hw: int, n_ops: int = 3, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    k, group = (1, 1) if kind == "pw" else (3, c if kind == "dw" else 1)
    fan_in = (c // group) * k * k
    nodes, inits, prev = [], {}, "x"
    for i in range(n_ops):
        inits[f"w{i}"] = rng.normal(0, np.sqrt(2 / fan_in), (c, c // group, k, k))
        inits[f"b{i}"] = rng.normal(0, 0.1, c)
        pads = [k // 2] * 4
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], group=group, pads=pads))
        out = "y" if i == n_ops - 1 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [out]))
        prev = out
    return _model(nodes, inits, ["N", c, hw, hw], ["N", c, hw, hw])


def ffn(seq: int, d: int = 192, h: int = 768, gemm: bool = False, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = {
        "w1": rng.normal(0, np.sqrt(2 / d), (d, h)),
        "b1": rng.normal(0, 0.1, h),
        "w2": rng.normal(0, np.sqrt(2 / h), (h, d)),
        "b2": rng.normal(0, 0.1, d),
    }
    if gemm:
        nodes = [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["g1"]),
            helper.make_node("Relu", ["g1"], ["r1"]),
            helper.make_node("Gemm", ["r1", "w2", "b2"], ["y"]),
        ]
        return _model(nodes, inits, ["N", d], ["N", d])
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["y"]),
    ]
    return _model(nodes, inits, ["N", seq, d], ["N", seq, d])


def build(op: str, shape) -> tuple[onnx.ModelProto, tuple[int, ...], str]:
    """(model, per-example input shape, label)."""
    if op in ("dw", "pw", "dense"):
        c, hw = shape
        return conv_chain(op, c, hw), (c, hw, hw), f"{op} C{c} {hw}x{hw}"
    if op == "matmul":
        return ffn(shape), (shape, 192), f"matmul FFN S{shape} 192-768-192"
    return ffn(0, gemm=True), (192,), "gemm 192-768-192"


def matrix() -> None:
    """Speed-up matrix (comparison x format) from every results_full_*.json in OUT."""
    print("| comparison | fp32 p50 ms | " + " | ".join(C.FORMATS[1:]) + " |")
    print("|---|---|" + "---|" * (len(C.FORMATS) - 1))
    for path in sorted(OUT.glob("results_full_*.json")):
        for g in json.loads(path.read_text())["groups"]:
            base, cells = g["p50s"]["fp32"], []
            for f in C.FORMATS[1:]:
                sp = [b / v for b, v in zip(base, g["p50s"][f], strict=True)]
                mark = {"faster": "**", "slower": "", "≈ noise": "~"}[C.verdict(sp)]
                med = f"{mark}{np.median(sp):.2f}{mark if mark == '**' else ''}"
                cells.append(f"{med} [{min(sp):.2f}–{max(sp):.2f}]")
            print(f"| {g['label']} | {C.med_range(base)} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small per-machine profile")
    ap.add_argument("--matrix", action="store_true", help="print the matrix of the saved full runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated op families")
    ap.add_argument("--batches", default="1,32")
    args = ap.parse_args()
    if args.matrix:
        matrix()
        return
    C.quiet()
    t_start = time.perf_counter()
    info = C.cpu_info()
    print(f"# int8 format per op type\n\nCPU: {C.isa_line(info)}; onnxruntime {info['onnxruntime']}\n")
    plan = QUICK if args.quick else FULL
    if args.only:
        plan = {k: v for k, v in plan.items() if k in args.only.split(",")}
    formats = QUICK_FORMATS if args.quick else C.FORMATS
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(1)
    groups: list[C.Group] = []
    kernels: dict[tuple[str, str], str] = {}
    t_q = time.perf_counter()
    for op, shapes in plan.items():
        for shape in shapes:
            model, ex_shape, label = build(op, shape)
            src = OUT / f"{label.replace(' ', '_')}_fp32.onnx"
            src.parent.mkdir(parents=True, exist_ok=True)
            onnx.save(model, str(src))
            calib = [rng.normal(0, 1, (4, *ex_shape)).astype(np.float32) for _ in range(8)]
            paths = {"fp32": src}
            for fmt in formats[1:]:
                paths[fmt] = C.quantize(src, src.with_name(src.name.replace("fp32", fmt)), fmt, calib)
            ops_by_fmt = {fmt: C.ops_summary(C.optimized_ops(p)) for fmt, p in paths.items()}
            for b in batches:
                x = rng.normal(0, 1, (b, *ex_shape)).astype(np.float32)
                g = C.Group(f"{label} b{b}", {fmt: (p, x, "all") for fmt, p in paths.items()})
                groups.append(g)
                for fmt in paths:
                    kernels[(g.label, fmt)] = ops_by_fmt[fmt]
    print(f"built and quantized {len(groups)} comparisons in {time.perf_counter() - t_q:.0f} s; timing...")
    timing = {"rounds": 3, "budget_s": 0.05, "max_calls": 20} if args.quick else {}
    C.run_groups(groups, args.repeats, **timing)
    print()
    print(C.group_table(groups, kernels))
    print("\nfastest per comparison (median speed-up over fp32), and what a profile would pick:\n")
    print("| comparison | fastest | speed-up | runner-up | pick |")
    print("|---|---|---|---|---|")
    decisions = {}
    for g in groups:
        ranked = sorted(g.variants, key=lambda n: -float(np.median(g.speedups(n))))
        a, b = ranked[0], ranked[1]
        pick, sp = decide(g)
        decisions[g.label] = {"format": pick, "speedup": sp}
        print(
            f"| {g.label} | {a} | {np.median(g.speedups(a)):.2f}× ({C.verdict(g.speedups(a))}) "
            f"| {b} {np.median(g.speedups(b)):.2f}× | {pick} ({sp:.2f}×) |"
        )
    wall = time.perf_counter() - t_start
    tag = "quick" if args.quick else "full" + ("_" + args.only.replace(",", "-") if args.only else "")
    kern = {g.label: {f: kernels[(g.label, f)] for f in g.variants} for g in groups}
    C.save_groups(OUT / f"results_{tag}.json", info, args, groups, wall_s=wall, kernels=kern, decisions=decisions)
    print(f"\nwall time {wall:.0f} s; results in {OUT / f'results_{tag}.json'}")


if __name__ == "__main__":
    main()
