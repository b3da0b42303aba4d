"""Serve one remote hardware pool: benchmark there, re-quantize for its preset if needed,
publish what is fast enough there.

Output, per model and pool: ``data/<model>/pools/<pool>/`` holding ``bench.json`` (the
worker's numbers and fingerprint), ``published.json``, and, when the pool's int8 preset
differs from this machine's, ``quantize/model.onnx`` with its own ``record.json``.

Steps:
1. Dispatch every artifact to the pool (tasks/dispatch.py). The result carries the
   worker's fingerprint, hence its preset.
2. If that preset differs from the one the ``quantize`` stage used here, quantize the
   fp32 model again with the pool's preset, validate it against the same tolerance, and
   benchmark it there beside fp32 (speed-ups are ratios within one run).
3. Publish for the pool: passing artifacts, except int8 ones slower than fp32 there.

This runs only under Prefect: a DVC stage cannot wait on another machine's worker.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flows.dispatch import dispatch
from model_compression.hashing import sha256_file
from tasks import chains
from tasks.core.project import Project
from tasks.core.stage import library_versions, write_json
from tasks.evaluation import evaluate_artifacts, load_rows
from tasks.gates.regression import bootstrap
from tasks.gates.tolerance import judge, tolerance
from tasks.pools import local_pool, pools, resolve_preset
from tasks.present.console import summarize
from tasks.publishing import publish_artifacts
from tasks.stages.benchmark import bench_settings

log = logging.getLogger("pipeline")


def _pool_quantize(project: Project, model: str, preset: str, out: Path) -> tuple[Path, dict[str, Any]]:
    """The pool's own int8 artifact and its validated metrics row."""
    dst = out / "quantize" / "model.onnx"
    done, _ = chains.apply(project, model, [("int8", chains.config(project, model, "quantize"))], dst, torch_model=None,
                           preset=preset)  # fmt: skip
    info = done[0]
    files = {"baseline": project.artifact(model, "baseline"), "quantize": dst}
    rows = evaluate_artifacts(project, model, files, bootstrap(project))
    judge(rows, tolerance(project, model))
    write_json(
        dst.parent / "record.json",
        {
            "stage": "quantize",
            "preset": preset,
            "params": project.section(model, "quantize"),
            "inputs": {"baseline": sha256_file(project.artifact(model, "baseline"))},
            "outputs": {"model.onnx": sha256_file(dst)},
            "info": info,
            "versions": library_versions(),
        },
    )
    return dst, rows[1]


def serve_pool(model: str, pool: str, root: str = ".") -> dict[str, Any]:
    """Benchmark ``model``'s artifacts on remote ``pool`` and publish for it.

    Returns ``{"pool", "status", ...}``; status ``not benchmarked`` (with ``reason``)
    leaves the pool unpublished and the run going.
    """
    project = Project.at(root)
    spec = pools(project)[pool]
    out = project.stage_dir(model, "pools") / pool
    out.mkdir(parents=True, exist_ok=True)
    files = project.artifacts(model)
    rows = load_rows(project, model)
    settings = bench_settings(project, model)
    bench = dispatch(project, spec, files, settings)
    if bench["status"] != "benchmarked":
        write_json(out / "bench.json", bench)
        return bench
    preset, here = resolve_preset(spec, bench["fingerprint"]), resolve_preset(local_pool(project))
    if preset != here:
        log.info("%s: pool %s needs int8 preset %s (this machine: %s); re-quantizing", model, pool, preset, here)
        files["quantize"], rows["quantize"] = _pool_quantize(project, model, preset, out)
        again = dispatch(project, spec, {"baseline": files["baseline"], "quantize": files["quantize"]}, settings)
        if again["status"] != "benchmarked":
            write_json(out / "bench.json", again)
            return again
        bench["results"]["quantize"] = again["results"]["quantize"]
        bench["speedup_vs_fp32"]["quantize"] = again["speedup_vs_fp32"]["quantize"]
        bench["int8_slower"] = sorted({*bench["int8_slower"]} - {"quantize"} | {*again["int8_slower"]})
    bench["preset"] = preset
    summarize(model, pool, bench)
    write_json(out / "bench.json", bench)
    published = publish_artifacts(project, model, spec, files, rows, bench)
    write_json(out / "published.json", published)
    return {
        "pool": pool,
        "status": "benchmarked",
        "preset": preset,
        "cpu": bench["fingerprint"]["cpu"],
        "int8_slower": bench["int8_slower"],
        "version": published["version"],
        "published": sorted(published["artifacts"]),
    }
