"""Q2 whole network: which int8 format is fastest for a MobileNet-style CNN on this machine.

python -m bench.int8_study.cnn_formats [--repeats 3] [--width 1.0]

The study's depthwise-separable CNN (1x28x28, stem + 9 dw/pw blocks, 1.08 M params at
width 1.0; random weights with BatchNorm statistics from 512 Fashion-MNIST images),
exported with BatchNorm nodes, run through ``quant_pre_process`` (folds them), then
quantized in every format of ``common.FORMATS`` (static: per-channel, reduce_range=True,
MinMax on 64 images). Times batch 1 and batch 32, all formats interleaved, against the
pre-processed fp32 model; also reports fidelity to fp32 on 512 test images and the
kernels ORT runs.
"""

from __future__ import annotations

import argparse
import time

from bench.int8_study import common as C

OUT = C.WORKDIR / "cnn"


def prepared_cnn(width: float) -> tuple[object, C.Path]:
    """(torch model, pre-processed fp32 ONNX path) of the timing CNN."""
    model = C.random_bn_cnn(width)
    raw = C.export(model, OUT / f"w{width}_raw_bn.onnx", fold=False)
    return model, C.preprocess(raw, OUT / f"w{width}_pre.onnx")


def calibration(n: int = 64) -> list:
    x, _ = C.fashion("train", n, offset=50000)
    return [x[i : i + 8] for i in range(0, n, 8)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=float, default=1.0)
    args = ap.parse_args()
    C.quiet()
    t0 = time.perf_counter()
    info = C.cpu_info()
    print(f"# whole CNN, int8 formats\n\nCPU: {C.isa_line(info)}; {C.load_line()}\n")
    model, pre = prepared_cnn(args.width)
    print(f"params {C.param_count(model):,}")
    calib = calibration()
    paths = {"fp32": pre}
    for fmt in C.FORMATS[1:]:
        paths[fmt] = C.quantize(pre, OUT / f"w{args.width}_{fmt}.onnx", fmt, calib)
    test_x, _ = C.fashion("test", 512)
    ref = C.run_model(pre, test_x)
    print("\n| format | test cos mean / min | top-1 agreement | file MB | kernels ORT runs |")
    print("|---|---|---|---|---|")
    kernels = {}
    for fmt, p in paths.items():
        e = C.output_error(ref, C.run_model(p, test_x))
        k = C.ops_summary(C.optimized_ops(p))
        mb = p.stat().st_size / 1e6
        print(f"| {fmt} | {e['cos_mean']:.4f} / {e['cos_min']:.4f} | {e['top1_agree']:.3f} | {mb:.2f} | {k} |")
        for b in (1, 32):
            kernels[(f"CNN b{b}", fmt)] = k
    groups = [C.Group(f"CNN b{b}", {f: (p, test_x[:b], "all") for f, p in paths.items()}) for b in (1, 32)]
    print()
    C.run_groups(groups, args.repeats)
    print()
    print(C.group_table(groups))
    C.save_groups(
        OUT / "results_formats.json", info, args, groups, kernels={f"{a}|{b}": v for (a, b), v in kernels.items()}
    )
    print(f"\n{C.load_line()}; wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
