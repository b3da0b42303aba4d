"""The CNN's recipe over seeds: the claim is the worst seed, not one lucky run.

python -m bench.cnn_seeds [--model fashion-cnn] [--seeds 0 1 2] [--root .] [--work DIR] [--json FILE]

For each seed, a copy of the project at ``--root`` whose params.yaml differs only in ``seed``
(the baseline's training, and every fine-tuning step of the recipe; k-means is seeded by
its linear initialisation) and in the sections that are not the recipe, set to null so that
only baseline -> recipe -> package -> validate -> benchmark run. The fetched dataset and the
pool's kernel profile are copied from ``--root`` (their stages must have run there). A
``--work`` folder from an earlier run is reused: its params.yaml is rewritten and the stage
cache rebuilds what changed (after a recipe change: not the seeds' baselines). Every
choice inside the recipe is made on the validation split; the accuracy is the test split's.

Prints, per seed and as mean / min / max: fp32 test accuracy, the recipe's drop in points,
its transfer package and ONNX file against the fp32 ONNX file, the speed-up at each batch
size, and the sha256 of the baseline's and the recipe's ``model.onnx``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

from model_compression.hashing import sha256_file
from tasks.core.pipeline import ORDER, stage
from tasks.core.project import Project

NOT_THE_RECIPE = ("prune", "quantize", "factorize", "distill", "search")
STAGES = [s for s in ORDER[ORDER.index("baseline") : ORDER.index("benchmark") + 1]]


def seeded_project(root: Path, model: str, seed: int, dest: Path) -> Path:
    """A project at ``dest``: ``root``'s params with ``seed``, only ``model``, only its recipe."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["seed"] = seed
    params["catalogue"] = [model]
    params["models"] = {model: {**params["models"][model], **dict.fromkeys(NOT_THE_RECIPE)}}
    reuse = (dest / "data" / model / "fetch").is_dir()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if reuse:
        return dest
    src = Project.at(root)
    for folder in ("fetch",):
        shutil.copytree(src.stage_dir(model, folder), dest / "data" / model / folder)
        shutil.copy(src.stage_dir(model, folder).with_name(f"{folder}.record.json"), dest / "data" / model)
    if (root / "data" / "pools").is_dir():
        shutil.copytree(root / "data" / "pools", dest / "data" / "pools")
    return dest


def one_seed(root: Path, model: str, seed: int, work: Path) -> dict[str, Any]:
    project_root = seeded_project(root, model, seed, work / f"seed-{seed}")
    records = {s: stage(s).run(model, str(project_root)) for s in STAGES}
    project = Project.at(project_root)
    recipe = project.recipe_names(model)[0]
    rows = {r["artifact"]: r for r in project.read_output(model, "validate", "validation.json")["rows"]}
    package = project.read_output(model, "package", "package.json")[recipe]
    bench = project.read_output(model, "benchmark", "bench.json")
    base_bytes = rows["baseline"]["size_bytes"]
    return {
        "seed": seed,
        "recipe": recipe,
        "fp32_accuracy": rows["baseline"]["accuracy"],
        "accuracy": rows[recipe]["accuracy"],
        "drop_points": 100 * (rows["baseline"]["accuracy"] - rows[recipe]["accuracy"]),
        "package_bytes": package["package_bytes"],
        "package_exact": package["exact"],
        "transfer_ratio": base_bytes / package["package_bytes"],
        "onnx_ratio": base_bytes / rows[recipe]["size_bytes"],
        "speedup": {b: bench["speedup_vs_fp32"][recipe][b] for b in bench["speedup_vs_fp32"][recipe]},
        "baseline_sha256": sha256_file(project.artifact(model, "baseline")),
        "recipe_sha256": sha256_file(project.artifact(model, recipe)),
        "train_s": records["baseline"].get("seconds"),
        "recipe_s": records["recipe"].get("seconds"),
        "isa": records["baseline"].get("isa"),
    }


def table(runs: list[dict[str, Any]]) -> str:
    batches = list(runs[0]["speedup"])
    head = ["seed", "fp32 acc", "recipe acc", "drop (pt)", "package B", "package x", "ONNX x"]
    head += [f"speed-up b{b}" for b in batches] + ["baseline sha256", "recipe sha256"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = [str(r["seed"]), f"{r['fp32_accuracy']:.4f}", f"{r['accuracy']:.4f}", f"{r['drop_points']:.2f}"]
        cells += [f"{r['package_bytes']:,}", f"{r['transfer_ratio']:.1f}", f"{r['onnx_ratio']:.2f}"]
        cells += [f"{r['speedup'][b]:.2f}" for b in batches]
        cells += [f"`{r['baseline_sha256'][:16]}`", f"`{r['recipe_sha256'][:16]}`"]
        lines.append("| " + " | ".join(cells) + " |")
    for name, fn in (("mean", statistics.mean), ("min", min), ("max", max)):
        cells = [name, *(f"{fn(r[k] for r in runs):.4f}" for k in ("fp32_accuracy", "accuracy"))]
        cells += [f"{fn(r['drop_points'] for r in runs):.2f}", f"{fn(r['package_bytes'] for r in runs):,.0f}"]
        cells += [f"{fn(r[k] for r in runs):.1f}" for k in ("transfer_ratio",)]
        cells += [f"{fn(r['onnx_ratio'] for r in runs):.2f}"]
        cells += [f"{fn(r['speedup'][b] for r in runs):.2f}" for b in batches] + ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    worst = max(runs, key=lambda r: r["drop_points"])
    lines.append(
        f"\nWorst seed: {worst['seed']} (drop {worst['drop_points']:.2f} pt, package "
        f"{worst['transfer_ratio']:.1f}x, ONNX {worst['onnx_ratio']:.2f}x)."
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashion-cnn")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--root", default=".")
    ap.add_argument("--work", default=None, help="where the seeded projects go (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="also write the per-seed results here")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="cnn-seeds-"))
    runs = [one_seed(Path(a.root).resolve(), a.model, s, work) for s in a.seeds]
    if a.json:
        Path(a.json).write_text(json.dumps(runs, indent=2) + "\n")
    print(f"### {a.model}: recipe {runs[0]['recipe']} over seeds {a.seeds} ({work})\n")
    print(table(runs))


if __name__ == "__main__":
    main()
