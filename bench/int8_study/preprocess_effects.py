"""Q3: do quant_pre_process, BatchNorm folding and ORT's session optimization level change
int8 speed of the whole CNN?

python -m bench.int8_study.preprocess_effects [--repeats 3] [--width 1.0]

The CNN of ``cnn_formats`` exported twice: with BatchNorm folded by the exporter (torch's
default, ``do_constant_folding=True``) and with BatchNormalization nodes kept. Each is
quantized (static QDQ U8S8, per-channel) with and without ``quant_pre_process`` first:

    int8 bn-export raw       BatchNormalization nodes left in the graph the quantizer sees
    int8 bn-export + pre     quant_pre_process folded them into Conv
    int8 folded-export raw   the exporter already folded them
    int8 folded-export + pre both

Comparison 1 times these against fp32 (both exports) at ORT_ENABLE_ALL. Comparison 2
times fp32 and int8 (bn-export + pre) at each session graph optimization level (disable,
basic, extended, all), against fp32 at all. Both at batch 1 and 32.
"""

from __future__ import annotations

import argparse
import time

import onnx

from bench.int8_study import common as C
from bench.int8_study.cnn_formats import calibration

OUT = C.WORKDIR / "pre"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=float, default=1.0)
    args = ap.parse_args()
    C.quiet()
    t0 = time.perf_counter()
    info = C.cpu_info()
    print(f"# pre-processing effects\n\nCPU: {C.isa_line(info)}; {C.load_line()}\n")
    model = C.random_bn_cnn(args.width)
    calib = calibration()
    fp32 = {
        "bn-export": C.export(model, OUT / "fp32_bn.onnx", fold=False),
        "folded-export": C.export(model, OUT / "fp32_folded.onnx", fold=True),
    }
    int8 = {}
    for name, src in fp32.items():
        int8[f"int8 {name} raw"] = C.quantize(src, OUT / f"int8_{name}_raw.onnx", "qdq_u8s8", calib)
        pre = C.preprocess(src, OUT / f"fp32_{name}_pre.onnx")
        int8[f"int8 {name} + pre"] = C.quantize(pre, OUT / f"int8_{name}_pre.onnx", "qdq_u8s8", calib)
    test_x, _ = C.fashion("test", 512)
    ref = C.run_model(fp32["folded-export"], test_x)
    print("| model | nodes in file (BatchNormalization) | kernels ORT runs (level all) | test cos mean | top-1 agree |")
    print("|---|---|---|---|---|")
    for name, p in {**{f"fp32 {k}": v for k, v in fp32.items()}, **int8}.items():
        g = onnx.load(str(p)).graph
        n_bn = sum(n.op_type == "BatchNormalization" for n in g.node)
        e = C.output_error(ref, C.run_model(p, test_x))
        k = C.ops_summary(C.optimized_ops(p))
        print(f"| {name} | {len(g.node)} ({n_bn}) | {k} | {e['cos_mean']:.4f} | {e['top1_agree']:.3f} |")
    print("\nkernels of int8 bn-export + pre, and of fp32, at each session optimization level:\n")
    q = int8["int8 bn-export + pre"]
    for lvl in C.LEVELS:
        k_int8, k_fp32 = (C.ops_summary(C.optimized_ops(p, lvl)) for p in (q, fp32["bn-export"]))
        print(f"- {lvl}: int8 `{k_int8}`; fp32 `{k_fp32}`")
    groups = []
    for b in (1, 32):
        x = test_x[:b]
        v = {"fp32 folded-export": (fp32["folded-export"], x, "all"), "fp32 bn-export": (fp32["bn-export"], x, "all")}
        v.update({k: (p, x, "all") for k, p in int8.items()})
        groups.append(C.Group(f"export/pre b{b}", v, base="fp32 folded-export"))
        v = {f"fp32 @{lvl}": (fp32["bn-export"], x, lvl) for lvl in C.LEVELS}
        v.update({f"int8 @{lvl}": (q, x, lvl) for lvl in C.LEVELS})
        groups.append(C.Group(f"opt level b{b}", v, base="fp32 @all"))
    print()
    C.run_groups(groups, args.repeats)
    print()
    print(C.group_table(groups))
    C.save_groups(OUT / "results.json", info, args, groups)
    print(f"\n{C.load_line()}; wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
