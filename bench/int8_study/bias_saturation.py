"""Q1: does static int8 saturate int32 biases, and which option prevents it?

python -m bench.int8_study.bias_saturation [--dead 1e-8] [--beta 1.5] [--block 2]

Builds the study's depthwise-separable CNN at width 0.25 (1x28x28, 73 k params), trains it
briefly on Fashion-MNIST, then kills one depthwise output channel: its 3x3 weights are set
to ``--dead`` (1e-8, or 0) and its BatchNorm to gamma=1, mean=0, var=1-eps, beta=``--beta``,
so after folding the channel's Conv has weights ~1e-8 and bias ``beta``. Exported with
BatchNorm nodes kept (``dynamo=False``, opset 17), run through ``quant_pre_process`` (which
folds BatchNorm into Conv), then ``quantize_static`` (per-channel, int8 weights, uint8
activations, QDQ, 64 calibration images) in several configurations.

For each it prints: the int32 bias tensors that hit int32 max/min (np.clip saturated them),
the largest |q|, the dead channel's quantized bias and what it dequantizes to, the worst
error of any dequantized bias in units of its scale (<= 0.5 when nothing was clipped),
which kernels ORT runs, and the output error against fp32 (max |Δlogit|, cosine, top-1
agreement) on the 64 calibration images and on 1000 test images.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
from onnx import numpy_helper

from bench.int8_study import common as C

OUT = C.WORKDIR / "bias"


def kill_channel(model, block: int, channel: int, dead: float, beta: float) -> None:
    """Make depthwise output ``channel`` of DS block ``block`` dead with bias ``beta``."""
    import torch

    dw, bn = model[3 + 6 * block], model[4 + 6 * block]
    assert dw.groups == dw.in_channels > 1, "not a depthwise conv"
    with torch.no_grad():
        dw.weight[channel] = dead
        bn.weight[channel] = 1.0
        bn.bias[channel] = beta
        bn.running_mean[channel] = 0.0
        bn.running_var[channel] = 1.0 - bn.eps


def dw_conv_names(path) -> list[str]:
    g = onnx.load(str(path)).graph
    return [n.name for n in g.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]


def zero_tiny_channels(src, dst, tol: float = 1e-6) -> int:
    """Set to exactly 0 every Conv output channel whose weights are all below ``tol``
    (onnxruntime then gives that channel scale 1.0). Returns how many channels."""
    m = onnx.load(str(src))
    inits = {t.name: t for t in m.graph.initializer}
    count = 0
    for n in m.graph.node:
        if n.op_type != "Conv" or n.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[n.input[1]]).copy()
        dead = np.abs(w.reshape(len(w), -1)).max(1) < tol
        if dead.any():
            w[dead] = 0.0
            inits[n.input[1]].CopyFrom(numpy_helper.from_array(w, n.input[1]))
            count += int(dead.sum())
    onnx.save(m, str(dst))
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dead", type=float, default=1e-8, help="weight value of the dead channel (try 0)")
    ap.add_argument("--beta", type=float, default=1.5, help="its BatchNorm beta = folded bias")
    ap.add_argument("--block", type=int, default=2, help="which DS block's depthwise conv")
    ap.add_argument("--channel", type=int, default=3)
    args = ap.parse_args()
    C.quiet()
    t_start = time.perf_counter()
    info = C.cpu_info()
    print(f"# bias saturation (onnxruntime {info['onnxruntime']}, onnx {info['onnx']}, torch {info['torch']})\n")

    tag = f"dead{args.dead:g}_beta{args.beta:g}_b{args.block}c{args.channel}"

    def hook(m) -> None:
        kill_channel(m, args.block, args.channel, args.dead, args.beta)

    # the channel is dead during training too, so the network learns with it (as real dead channels are)
    model = C.trained_cnn(width=0.25, train_n=8000, hook=hook, tag="_" + tag)
    raw = C.export(model, OUT / f"{tag}_raw.onnx", fold=False)
    pre = C.preprocess(raw, OUT / f"{tag}_pre.onnx")
    n_bn = [sum(n.op_type == "BatchNormalization" for n in onnx.load(str(p)).graph.node) for p in (raw, pre)]
    print(f"params {C.param_count(model):,}; BatchNormalization nodes: exported {n_bn[0]}, after pre-process {n_bn[1]}")
    target = dw_conv_names(pre)[args.block]
    w = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(pre)).graph.initializer}
    node = next(n for n in onnx.load(str(pre)).graph.node if n.name == target)
    wk, bk = w[node.input[1]][args.channel], w[node.input[2]][args.channel]
    print(f"dead channel: {target} channel {args.channel}: folded max|w| = {np.abs(wk).max():.3g}, bias = {bk:.4g}\n")

    calib_x, _ = C.fashion("train", 64, offset=50000)
    calib = [calib_x[i : i + 8] for i in range(0, 64, 8)]
    test_x, test_y = C.fashion("test", 1000)
    ref_c, ref_t = C.run_model(pre, calib_x), C.run_model(pre, test_x)
    print(f"fp32 test accuracy {np.mean(ref_t.argmax(1) == test_y):.4f}\n")

    zeroed = OUT / f"{tag}_pre_zeroed.onnx"
    n_zeroed = zero_tiny_channels(pre, zeroed)
    off = {"QDQDisableWeightAdjustForInt32Bias": True}
    wbq = ["WeightBiasQuantization"]
    # name -> (source model, format, quantize kwargs[, ORT transformers disabled in the session])
    variants: dict[str, tuple] = {
        "A. QDQ U8S8, ORT defaults (int32-bias weight-scale adjust on)": (pre, "qdq_u8s8", {}),
        "A + reduce_range=True (the repo's portable default)": (pre, "qdq_u8s8", {"reduce_range": True}),
        "B. QDQ U8S8, adjust off (QDQDisableWeightAdjustForInt32Bias=True)": (pre, "qdq_u8s8", {"extra": off}),
        "B + reduce_range=True": (pre, "qdq_u8s8", {"extra": off, "reduce_range": True}),
        "C. QDQ U8U8 (uint8 weights), defaults": (pre, "qdq_u8s8", {"weight_type": "uint8"}),
        "D. QOperator U8S8, defaults": (pre, "qop_u8s8", {}),
        "fix on B: weight-scale floor (MinimumRealRange=1e-4)": (
            pre,
            "qdq_u8s8",
            {"extra": {**off, "MinimumRealRange": 1e-4}},
        ),
        f"fix on B: zero channels with max abs(w) < 1e-6 first ({n_zeroed} ch)": (zeroed, "qdq_u8s8", {"extra": off}),
        "fix on B: nodes_to_exclude=[that dw Conv]": (pre, "qdq_u8s8", {"extra": off, "nodes_to_exclude": [target]}),
        "fix on B: nodes_to_exclude, session without WeightBiasQuantization": (
            pre,
            "qdq_u8s8",
            {"extra": off, "nodes_to_exclude": [target]},
            wbq,
        ),
        "fix on B: float bias (QuantizeBias=False)": (pre, "qdq_u8s8", {"extra": {**off, "QuantizeBias": False}}),
        "fix on B: float bias, session without WeightBiasQuantization": (
            pre,
            "qdq_u8s8",
            {"extra": {**off, "QuantizeBias": False}},
            wbq,
        ),
        "fix on C: uint8 weights + MinimumRealRange=1e-4": (
            pre,
            "qdq_u8s8",
            {"weight_type": "uint8", "extra": {"MinimumRealRange": 1e-4}},
        ),
    }
    kw_defaults = {"reduce_range": False}
    print(
        "| variant | bias tensors with clipped entries (entries) | max abs(q) | dead ch. q → dequantized "
        "| worst bias error (LSB) | calib: max abs Δ / cos min / top-1 | test: cos mean / top-1 / acc "
        "| ORT kernels (Conv-like) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    dead_bias_name = node.input[2] + "_quantized"
    for i, (name, (src, fmt, kw, *rest)) in enumerate(variants.items()):
        disabled = rest[0] if rest else ()
        dst = OUT / f"{tag}_v{i}.onnx"
        C.quantize(src, dst, fmt, calib, **{**kw_defaults, **kw})
        biases = C.int32_biases(dst, src)
        clipped = [b for b in biases if b.clipped]
        dead_txt = "float in file"
        inits = {t.name: t for t in onnx.load(str(dst)).graph.initializer}
        if dead_bias_name in inits:
            qk = int(numpy_helper.to_array(inits[dead_bias_name])[args.channel])
            scale = _bias_scale(dst, dead_bias_name)
            dead_txt = str(qk) if scale is None else f"{qk:,} → {qk * scale[args.channel % scale.size]:.4g}"
        errs = [b.dequant_err_lsb for b in biases if b.dequant_err_lsb is not None]
        ec = C.output_error(ref_c, C.run_model(dst, calib_x, disabled=disabled))
        et = C.output_error(ref_t, C.run_model(dst, test_x, disabled=disabled), test_y)
        ops = C.optimized_ops(dst, disabled=disabled)
        kern = C.ops_summary(ops, keep={"QLinearConv", "Conv", "ConvInteger", "FusedConv", "QGemm", "Gemm"})
        results[name] = {"disabled_optimizers": list(disabled), "biases": [b.__dict__ for b in biases]}
        results[name].update({"calib": ec, "test": et, "ops": dict(ops)})
        print(
            f"| {name} | {len(clipped)} ({sum(b.clipped for b in clipped)}) "
            f"| {max((b.max_abs_q for b in biases), default=0):,} | {dead_txt} "
            f"| {max(errs, default=float('nan')):.3g} "
            f"| {ec['max_abs']:.3g} / {ec['cos_min']:.4f} / {ec['top1_agree']:.3f} "
            f"| {et['cos_mean']:.4f} / {et['top1_agree']:.3f} / {et['accuracy']:.4f} | {kern} |"
        )
    C.save_json(OUT / f"{tag}_results.json", {"args": vars(args), "cpu": info, "results": results})
    print(f"\n{time.perf_counter() - t_start:.0f} s; results in {OUT / f'{tag}_results.json'}")


def _bias_scale(path, bias_name: str) -> np.ndarray | None:
    """The scale a QDQ DequantizeLinear applies to ``bias_name`` (QOperator: x_scale*w_scale)."""
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] == bias_name:
            return np.atleast_1d(inits[n.input[1]])
        if n.op_type == "QLinearConv" and len(n.input) > 8 and n.input[8] == bias_name:
            return np.atleast_1d(inits[n.input[1]] * inits[n.input[4]])
    return None


if __name__ == "__main__":
    main()
