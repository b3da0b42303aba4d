"""int8 presets on this machine: quality and speed of each x86 preset's artifact.

python -m bench.presets [MODEL ...]

Quantizes each model's fp32 ONNX with the avx2 preset (7-bit weights, ``reduce_range``)
and the avx512_vnni preset (full 8-bit), validates both against fp32 exactly as the
validate stage does, and times them in one interleaved benchmark beside fp32. Also
prints the preset this machine's fingerprint calls for.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from model_compression.quantize.presets import preset_for
from model_compression.runtime.compare import benchmark_files
from model_compression.runtime.fingerprint import fingerprint
from tasks import chains
from tasks.core import runtime
from tasks.core.project import Project
from tasks.evaluation import evaluate_artifacts
from tasks.stages.benchmark import bench_settings

PRESETS = ("avx2", "avx512_vnni")


def main(models: list[str]) -> None:
    project = Project.at(".")
    runtime.configure(project.seed, project.threads)
    fp = fingerprint()
    print(f"This machine: {fp['cpu']}, flags {', '.join(fp['flags'])} -> preset {preset_for(fp)}\n")
    for model in models or project.catalogue():
        with tempfile.TemporaryDirectory() as tmp:
            files = {"baseline": project.artifact(model, "baseline")}
            for preset in PRESETS:
                files[preset] = Path(tmp) / f"{preset}.onnx"
                steps = [("int8", chains.config(project, model, "quantize"))]
                chains.apply(project, model, steps, files[preset], torch_model=None, preset=preset)
            rows = {r["artifact"]: r for r in evaluate_artifacts(project, model, files)}
            cfg = bench_settings(project, model)
            bench = benchmark_files(files, cfg)
        quality = project.kind(model).project.kind(model).quality_columns(project, model)
        batches = [str(b) for b in cfg.batch_sizes]
        head = ["artifact", "bytes", *quality, *(f"p50 ms (b={b})" for b in batches)]
        head += [f"speed-up (b={b})" for b in batches]
        print(f"### {model}\n\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for name, r in rows.items():
            cells = [name, f"{r['size_bytes']:,}", *(f"{r[q]:.4f}" for q in quality)]
            cells += [f"{bench['results'][name][b]['p50_ms']:.3f}" for b in batches]
            cells += [f"{bench['speedup_vs_fp32'][name][b]:.2f}" for b in batches]
            print("| " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
