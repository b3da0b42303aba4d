"""Where a text encoder's int8 speed comes from: fusion, int8 and the low-bit table, apart.

python -m bench.encoder_speed [MODEL] [--repeats 3] [--root .]

From a finished run's artifacts, builds the chain's intermediate graphs with the recipe
steps' own code (fused fp32; fused + int8; plain ``quantize_dynamic`` per-channel is the
``quantize`` artifact; each recipe with a low-bit table, decoded the other way: the looked-up
rows at every call against the whole table at load) and times them beside fp32 and the run's
recipe artifacts, each in
a fresh process with interleaved rounds (``runtime.compare.benchmark_files``), ``--repeats``
times. Prints the median speed-up per batch size and its spread across repeats: a
figure whose spread is wider than its distance from another is within the noise.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.repeatability import spread
from model_compression.registry import recipe_steps
from model_compression.runtime.compare import benchmark_files
from tasks import chains
from tasks.core.project import Project
from tasks.pools import local_pool, resolve_preset
from tasks.stages.benchmark import bench_settings


def variants(project: Project, model: str, folder: Path, heads: int, hidden: int) -> dict[str, Path]:
    """fp32, plain ORT int8, fused fp32, fused + int8 (no table coding), the distilled student
    (fp32, int8 unfused, fused + int8) when there is one, and the recipes."""
    kind = project.kind(model)
    teacher = kind.load(project, model)
    preset = resolve_preset(local_pool(project))
    fuse = {"step": "fuse", "num_heads": heads, "hidden_size": hidden}
    int8 = {"step": "int8", "op_types": ["MatMul", "Attention"]}
    files = {"fp32": project.artifact(model, "baseline"), "ort-int8": project.artifact(model, "quantize")}
    plain = {"step": "int8", "op_types": ["MatMul"]}
    student = project.artifact(model, "distill")
    builds = [("fused-fp32", [fuse], None), ("fused-int8", [fuse, int8], None)]
    if student.is_file():  # the distilled student, unfused and fused, before any table coding
        files["student-fp32"] = student
        builds += [("student-int8", [plain], student), ("student-fused-int8", [fuse, int8], student)]
    for name, steps, start in builds:
        chain = recipe_steps(name, steps, kind.recipe_steps, kind.name)
        dst = folder / f"{name}.onnx"
        chains.apply(project, model, chain, dst, torch_model=None, onnx=start, teacher=teacher, preset=preset)
        files[name] = dst
    for name in project.recipe_names(model):
        if project.artifact(model, name).is_file():
            files[name] = project.artifact(model, name)
            files |= other_decode(project, model, name, folder, teacher, preset)
    return files


def other_decode(project: Project, model: str, name: str, folder: Path, teacher: Any, preset: str) -> dict[str, Path]:
    """Recipe ``name`` rebuilt with its ``embed_lowbit`` steps decoding the other way (rows at
    every call against the whole table at load), as ``<name> (decode <mode>)``; none if it has
    no such step."""
    spec = project.recipe_spec(model, name)
    lowbit = [s for s in spec["steps"] if s["step"] == "embed_lowbit"]
    if not lowbit:
        return {}
    mode = "rows" if lowbit[0].get("decode", "rows") == "table" else "table"
    steps = [{**s, "decode": mode} if s["step"] == "embed_lowbit" else s for s in spec["steps"]]
    start = project.artifact(model, "distill") if spec.get("from") == "distill" else None
    kind = project.kind(model)
    chain = recipe_steps(name, steps, kind.recipe_steps, kind.name)
    label = f"{name} (decode {mode})"
    dst = folder / f"{name}-{mode}.onnx"
    chains.apply(project, model, chain, dst, torch_model=None, onnx=start, teacher=teacher, preset=preset)
    return {label: dst}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="minilm")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--root", default=".")
    a = ap.parse_args()
    project = Project.at(a.root)
    cfg = bench_settings(project, a.model)
    with tempfile.TemporaryDirectory(prefix="encoder-speed-") as tmp:
        files = variants(project, a.model, Path(tmp), a.heads, a.hidden)
        runs: list[dict[str, Any]] = [benchmark_files(files, cfg, reference="fp32") for _ in range(a.repeats)]
        sizes = {name: Path(path).stat().st_size for name, path in files.items()}  # before the folder goes
    print(f"### {a.model}: {a.repeats} repeats, {cfg.runs} timed runs, threads={cfg.threads}, seq {cfg.seq_len}\n")
    batches = [str(b) for b in cfg.batch_sizes]
    print("| graph | bytes | " + " | ".join(f"speed-up b={b} (spread)" for b in batches) + " |")
    print("|---|---|" + "---|" * len(batches))
    for name in files:
        cells = []
        for b in batches:
            ups = [r["speedup_vs_fp32"][name][b] for r in runs]
            cells.append(f"{statistics.median(ups):.2f}x ({spread(ups):.0%})")
        print(f"| {name} | {sizes[name]:,} | " + " | ".join(cells) + " |")
    print(f"\nCPU: {runs[0]['fingerprint'].get('cpu', '?')}, preset {runs[0]['preset']}")


if __name__ == "__main__":
    main()
