"""Peak resident memory of every stage of every model, each in a fresh process, against
its documented bound.

python -m bench.memory [MODEL ...]   # after `make nightly`; default: the catalogue

For each (model, stage): the project's ``data/`` is hard-linked into a scratch copy, the
stage's own output is removed there, and ``python -m tasks <stage> <model>`` rebuilds it
in a fresh process; the stage runner records the peak RSS of its body (``VmHWM`` after a
reset at the body's start). The bound a stage must stay within grows with the model's fp32
ONNX file (``M`` MiB) and, for the stages that train or calibrate, with the declared batch
and sample counts (folded into the per-stage constants for the catalogue's settings):

    peak RSS (MiB) <= BASE + SLOPE[stage] x M

``BASE`` is the interpreter with torch, onnxruntime and transformers loaded. The package
stage's slope is small on purpose: it codes one tensor at a time, and a wide int32
tensor no longer gets a table sized by its range.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tasks.core.pipeline import ORDER
from tasks.core.project import Project

BASE = 1024  # MiB
SLOPE = {  # per MiB of fp32 ONNX
    "zoo": 1, "fetch": 1, "baseline": 8, "score": 6, "prune": 8, "quantize": 10, "factorize": 8, "distill": 14,
    "recipe": 14, "search": 16, "package": 6, "validate": 10, "benchmark": 6, "publish": 10, "report": 4,
}  # fmt: skip


def bound(stage: str, model_mib: float) -> float:
    return BASE + SLOPE[stage] * model_mib


def measure(project: Project, model: str, stage: str, scratch: Path) -> dict[str, float]:
    """Rebuild ``stage`` of ``model`` in a hard-linked copy of the project; its record's peak."""
    copy = scratch / f"{model}-{stage}"
    shutil.copytree(project.root / "data", copy / "data", copy_function=os.link, ignore=shutil.ignore_patterns(".s3"))
    shutil.copy(project.root / "params.yaml", copy / "params.yaml")
    out = copy / "data" / model / stage
    shutil.rmtree(out, ignore_errors=True)
    out.with_name(stage + ".record.json").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(project.root)}
    subprocess.run([sys.executable, "-m", "tasks", stage, model, "--root", str(copy)], check=True, env=env)
    record = json.loads(out.with_name(stage + ".record.json").read_text())
    shutil.rmtree(copy)
    return {"peak_rss_mb": record["peak_rss_mb"], "seconds": record["seconds"]}


def main(models: list[str]) -> None:
    project = Project.at(".")
    print("| model | stage | fp32 ONNX MiB | peak RSS MiB | bound MiB | within | seconds |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="memory-", dir=project.root) as tmp:
        for model in models or project.catalogue():
            model_mib = project.artifact(model, "baseline").stat().st_size / 2**20
            for stage in ORDER:
                if stage in ("zoo", "fetch", "publish"):  # I/O only; publish would upload a version again
                    continue
                got = measure(project, model, stage, Path(tmp))
                limit = bound(stage, model_mib)
                ok = "yes" if got["peak_rss_mb"] <= limit else "**no**"
                print(f"| {model} | {stage} | {model_mib:.1f} | {got['peak_rss_mb']:.0f} | {limit:.0f} | {ok} "
                      f"| {got['seconds']:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
