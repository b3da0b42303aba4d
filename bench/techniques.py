"""Every technique of the library on a catalogue model, each beside its plain anchor, in one run.

python -m bench.techniques [model ...]   # after `make nightly` (needs data/<model>/baseline)

Each variant is one technique applied alone to the fp32 model, with no fine-tuning (the
recipes add that), exported to ONNX and measured like a pipeline artifact: ONNX bytes,
transfer-package bytes (``info.package``), the validate stage's quality metrics on held-out
data, and the p50 speed-up at the model's bench batch sizes from the benchmark stage's
fresh-process interleaved rounds. The anchors are fp32 and plain ``onnxruntime.quantization.quantize_dynamic`` with
its defaults (per-tensor int8: what Optimum's dynamic quantization does).
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_compression.chain import probe_forward
from model_compression.factorize.svd import SVDConfig
from model_compression.factorize.svd import factorize as svd
from model_compression.info.package import pack
from model_compression.prune.magnitude import MagnitudePruneConfig, weight_matrices
from model_compression.prune.magnitude import prune as magnitude_prune
from model_compression.prune.sensitive import SensitivePruneConfig
from model_compression.prune.sensitive import prune as sensitive_prune
from model_compression.prune.structured import (
    ChannelPruneConfig,
    TransformerPruneConfig,
    prune_channels,
    prune_transformer,
)
from model_compression.quantize import binary, linear
from model_compression.quantize.kmeans import KMeansConfig, SensitiveKMeansConfig, share, share_sensitive
from model_compression.quantize.onnx_int4 import Int4Config
from model_compression.quantize.onnx_int4 import quantize as int4
from model_compression.quantize.onnx_int8 import OnnxInt8Config
from model_compression.quantize.onnx_int8 import quantize as int8
from model_compression.runtime.compare import benchmark_files
from tasks.core import runtime
from tasks.core.project import Project
from tasks.stages.benchmark import bench_settings
from tasks.stages.package import BITS, MIN_NUMEL

Make = Callable[[Path], Path]  # workdir -> the variant's ONNX file


@torch.no_grad()
def _fake_quant(model: nn.Module, quant: Callable[[torch.Tensor], torch.Tensor]) -> nn.Module:
    """Replace every weight matrix of >= 1,024 values by its quantized-dequantized copy."""
    for _, p in weight_matrices(model, 1024, ()):
        p.copy_(quant(p.detach()))
    return model


def variants(project: Project, model: str) -> dict[str, tuple[str, Make]]:
    """``{variant: (technique family, make)}`` for ``model``'s kind."""
    kind = project.kind(model)
    fp32 = kind.load(project, model)
    assert fp32 is not None, f"{model} has no torch model to compress"
    base = project.artifact(model, "baseline")
    text = kind.embeds(project, model)
    calibration = kind.calibration(project, model)
    forward = probe_forward(calibration, 32)[1]

    def torch_step(fn: Callable[[nn.Module], nn.Module]) -> Make:
        def make(work: Path) -> Path:
            kind.export(project, model, fn(copy.deepcopy(fp32)), work / "model.onnx")
            return work / "model.onnx"

        return make

    def onnx_step(fn: Callable[[Path, Path], Any]) -> Make:
        def make(work: Path) -> Path:
            fn(base, work / "model.onnx")
            return work / "model.onnx"

        return make

    def int8_cfg(**kw: Any) -> Make:
        feeds = calibration if kw.get("mode") == "static" else None
        return onnx_step(lambda s, d: int8(s, d, OnnxInt8Config(reduce_range=False, **kw), feeds))

    def plain_dynamic(src: Path, dst: Path) -> None:
        from onnxruntime.quantization import quantize_dynamic

        quantize_dynamic(str(src), str(dst))

    def int4_then_int8(src: Path, dst: Path) -> None:
        int4(src, dst.with_suffix(".int4.onnx"), Int4Config(ops=("Gather",), block_size=128))
        int8(dst.with_suffix(".int4.onnx"), dst, OnnxInt8Config(reduce_range=False, op_types=("MatMul",)))

    def lin4(w: torch.Tensor) -> torch.Tensor:
        return linear.quantize(w, linear.LinearQuantConfig(bits=4, per_channel=True)).dequantize()

    def sign(w: torch.Tensor) -> torch.Tensor:
        return binary.dequantize(*binary.binarize(w))

    out: dict[str, tuple[str, Make]] = {
        "fp32": ("anchor", onnx_step(lambda s, d: Path(d).write_bytes(Path(s).read_bytes()))),
        "quantize_dynamic (ort defaults)": ("anchor", onnx_step(plain_dynamic)),
        "int8 dynamic per-channel": ("int8", int8_cfg(mode="dynamic")),
    }
    if text:
        out |= {
            "int4 MatMulNBits (all MatMul)": ("int4", onnx_step(lambda s, d: int4(s, d, Int4Config(ops=("MatMul",))))),
            "int4 embeddings + int8 MatMul": ("int4+int8", onnx_step(int4_then_int8)),
            "heads -25%, FFN -25% (structured)": (
                "structured prune",
                torch_step(lambda m: prune_transformer(m, TransformerPruneConfig(heads=0.25, neurons=0.25))[0]),
            ),
            "SVD word embeddings, energy 0.9": (
                "factorize",
                torch_step(
                    lambda m: svd(
                        m, SVDConfig(energy=0.9, embeddings=True, skip=("layer.", "pooler", "position", "token_type"))
                    )[0]
                ),
            ),
            "SVD Linear, energy 0.9": (
                "factorize",
                torch_step(lambda m: svd(m, SVDConfig(energy=0.9, skip=("pooler",)))[0]),
            ),
        }
        sparsity, prune_skip = 0.3, ("embeddings",)
    else:
        out |= {
            **{
                f"int8 static per-channel, {c}": ("int8", int8_cfg(mode="static", calibrate_method=c))
                for c in ("minmax", "entropy", "percentile")
            },
            "channels -50% (structured)": (
                "structured prune",
                torch_step(lambda m: prune_channels(m, ChannelPruneConfig(amount=0.5))[0]),
            ),
            "SVD Linear, energy 0.9": ("factorize", torch_step(lambda m: svd(m, SVDConfig(energy=0.9))[0])),
            "SVD Linear + conv, energy 0.9": (
                "factorize",
                torch_step(lambda m: svd(m, SVDConfig(energy=0.9, convs=True))[0]),
            ),
            "SVD Linear + conv, 30 % parameter budget": (
                "factorize",
                torch_step(lambda m: svd(m, SVDConfig(param_budget=0.3, convs=True, max_param_ratio=1.0))[0]),
            ),
            "sign (binary) weights": ("binary", torch_step(lambda m: _fake_quant(m, sign))),
        }
        sparsity, prune_skip = 0.8, ()
    out |= {
        f"magnitude prune {sparsity:.0%} (uniform per layer)": (
            "prune",
            torch_step(lambda m: magnitude_prune(m, MagnitudePruneConfig(sparsity, "layer", skip=prune_skip))),
        ),
        f"magnitude prune {sparsity:.0%} (sensitivity per layer)": (
            "prune",
            torch_step(lambda m: sensitive_prune(m, SensitivePruneConfig(sparsity, skip=prune_skip), forward)[0]),
        ),
        "linear 4-bit per-channel weights": ("linear", torch_step(lambda m: _fake_quant(m, lin4))),
        "k-means 4-bit (16 shared values)": ("k-means", torch_step(lambda m: share(m, KMeansConfig(bits=4)))),
        "k-means, 3 bits mean (sensitivity per layer)": (
            "k-means",
            torch_step(lambda m: share_sensitive(m, SensitiveKMeansConfig(mean_bits=3.0), forward)[0]),
        ),
    }
    return out


def run(project: Project, model: str) -> str:
    quality = project.kind(model).project.kind(model).quality_columns(project, model)
    head = quality[0]
    evaluate = project.kind(model).evaluator(project, model)
    settings = bench_settings(project, model)
    batches = [str(b) for b in settings.batch_sizes]
    with tempfile.TemporaryDirectory() as tmp:
        files: dict[str, Path] = {}
        family: dict[str, str] = {}
        for i, (name, (fam, make)) in enumerate(variants(project, model).items()):
            work = Path(tmp) / f"v{i}"
            work.mkdir()
            files[name], family[name] = make(work), fam
            print(f"  built {name}", file=sys.stderr)
        rows: dict[str, dict[str, Any]] = {}
        ref = None
        for name, path in files.items():
            result = evaluate(path, ref)
            metrics = result.metrics
            ref = result.outputs if ref is None else ref
            stats = pack(path, path.with_suffix(".mcpk"), BITS, MIN_NUMEL)
            rows[name] = {**metrics, "bytes": os.path.getsize(path), "package": stats.bytes}
        speed = benchmark_files(files, settings, reference="fp32")["speedup_vs_fp32"]
    fp = rows["fp32"]
    cols = ["variant", "technique", "ONNX bytes", "× smaller", "package bytes", "× smaller (transfer)"]
    cols += [*quality, f"{head} drop", *(f"speed-up (b={b})" for b in batches)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, r in rows.items():
        cells = [name, family[name], f"{r['bytes']:,}", f"{fp['bytes'] / r['bytes']:.2f}", f"{r['package']:,}"]
        cells += [f"{fp['bytes'] / r['package']:.1f}", *(f"{r[q]:.4f}" for q in quality)]
        cells += [f"{fp[head] - r[head]:+.4f}", *(f"{speed[name][b]:.2f}" for b in batches)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(models: list[str]) -> None:
    project = Project.at(".")
    runtime.configure(project.seed, project.threads)
    for model in models or project.catalogue():
        print(f"#### {model}: each technique alone, no fine-tuning\n")
        print(run(project, model) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
