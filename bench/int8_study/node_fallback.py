"""Q4: per-node fallback. What does keeping the depthwise convs fp32 (pointwise int8) cost?

python -m bench.int8_study.node_fallback [--repeats 3] [--width 1.0]

The CNN of ``cnn_formats`` (pre-processed), static QDQ U8S8 per-channel:

    int8 all                     every Conv and the Gemm quantized
    dw excluded                  nodes_to_exclude = the 9 depthwise Convs
    dw excluded, no WBQ          the same model, session with ORT's WeightBiasQuantization
                                 transformer disabled
    pw excluded, no WBQ          the 9 pointwise Convs excluded instead (contrast)

ORT 1.32's WeightBiasQuantization transformer quantizes, at session creation, the float
weight (per-tensor int8) and bias of any Conv/Gemm that sits between a DequantizeLinear and
a QuantizeLinear, so an excluded node is int8 at run time unless that transformer is
disabled (``disabled_optimizers=["WeightBiasQuantization"]``). The table shows p50 and
speed-up against fp32 (batch 1 and 32, interleaved), the Q/DQ nodes left in the graph ORT
runs (the fp32/int8 boundaries), and fidelity to fp32 on 512 test images.
"""

from __future__ import annotations

import argparse
import time

import onnx

from bench.int8_study import common as C
from bench.int8_study.cnn_formats import calibration, prepared_cnn

OUT = C.WORKDIR / "fallback"
WBQ = ("WeightBiasQuantization",)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=float, default=1.0)
    args = ap.parse_args()
    C.quiet()
    t0 = time.perf_counter()
    info = C.cpu_info()
    print(f"# per-node fallback\n\nCPU: {C.isa_line(info)}; {C.load_line()}\n")
    _, pre = prepared_cnn(args.width)
    convs = [n for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
    dw = [n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    pw = [n.name for n in convs[1:] if n.name not in dw]  # convs[0] is the 3x3 stem
    calib = calibration()
    q_all = C.quantize(pre, OUT / "int8_all.onnx", "qdq_u8s8", calib)
    q_dw = C.quantize(pre, OUT / "int8_dw_excluded.onnx", "qdq_u8s8", calib, nodes_to_exclude=dw)
    q_pw = C.quantize(pre, OUT / "int8_pw_excluded.onnx", "qdq_u8s8", calib, nodes_to_exclude=pw)
    # name -> (path, ORT transformers disabled)
    variants = {
        "fp32": (pre, ()),
        "int8 all": (q_all, ()),
        "dw excluded": (q_dw, ()),
        "dw excluded, no WBQ": (q_dw, WBQ),
        "pw excluded, no WBQ": (q_pw, WBQ),
    }
    print(f"{len(dw)} depthwise, {len(pw)} pointwise convs\n")
    test_x, _ = C.fashion("test", 512)
    ref = C.run_model(pre, test_x)
    print("| variant | kernels ORT runs | Q+DQ nodes at run time | test cos mean | top-1 agree |")
    print("|---|---|---|---|---|")
    for name, (p, dis) in variants.items():
        ops = C.optimized_ops(p, disabled=dis)
        e = C.output_error(ref, C.run_model(p, test_x, disabled=dis))
        nq = ops["QuantizeLinear"] + ops["DequantizeLinear"]
        print(f"| {name} | {C.ops_summary(ops)} | {nq} | {e['cos_mean']:.4f} | {e['top1_agree']:.3f} |")
    groups = [
        C.Group(f"fallback b{b}", {n: (p, test_x[:b], "all", dis) for n, (p, dis) in variants.items()}) for b in (1, 32)
    ]
    print()
    C.run_groups(groups, args.repeats)
    print()
    print(C.group_table(groups))
    C.save_groups(OUT / "results.json", info, args, groups)
    print(f"\n{C.load_line()}; wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
