"""Stage ``report``: per model, ``metrics.json`` for ``dvc metrics show``, ``candidates.json``
and ``plots/*.png`` for ``dvc plots``, the HTML report (``tasks/present/html_report.py``)
and ``selection.json``: the published artifact serving should take under the params'
``selection`` policy. The page and the selection are also uploaded beside the version."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from model_compression.info.entropy import description_length_bits
from model_compression.search.pareto import pareto_points
from model_compression.search.select import select
from tasks.core.project import ARTIFACT_STAGES, Project
from tasks.core.stage import Stage, read_record, write_json
from tasks.gates.selection import policy
from tasks.present import html_report
from tasks.storage import s3 as s3io

log = logging.getLogger("pipeline")

# below this speed-up over fp32 (at the serving batch), a sparse artifact is storage-only
STORAGE_ONLY_SPEEDUP = 1.05


def storage_only(project: Project, model: str, stage: str, speedup: float) -> bool:
    """A sparse or weight-shared artifact (its stage says so) that runs no faster than fp32
    on onnxruntime: its zeros pay off only in the transfer package, not at serving time."""
    if stage in project.recipe_names(model):  # a recipe's artifact: its entry in the recipe stage's record
        summary = ((read_record(project.stage_dir(model, "recipe")) or {}).get("summary") or {}).get("recipes", {})
        flagged = (summary.get(stage) or {}).get("storage_only")
    else:
        flagged = ((read_record(project.stage_dir(model, stage)) or {}).get("summary") or {}).get("storage_only")
    return bool(flagged) and speedup < STORAGE_ONLY_SPEEDUP


def suggest_sparsity(project: Project, model: str) -> str | None:
    """For a pruned artifact that failed its tolerance: the highest sparsity the recipe
    search measured to pass on its own (no SVD, int8 or student), or None."""
    trials_file = project.stage_dir(model, "search") / "trials.json"
    trials = json.loads(trials_file.read_text()) if trials_file.is_file() else []
    alone = [t for t in trials if t.get("status") == "passed" and t.get("sparsity", 0) > 0
             and t.get("energy") == 1 and not t.get("int8") and not t.get("student")]  # fmt: skip
    if not alone:
        return None
    best = max(alone, key=lambda t: (t["sparsity"], -t["trial"]))
    return f"sparsity {best['sparsity']:g} passed in the search (trial {best['trial']}): set prune.sparsity to it"


def artifact_metrics(project: Project, model: str) -> dict[str, Any]:
    """One entry per artifact: size, package (and the quality of what it decodes to),
    quality, latency at the first batch size, URI."""
    validation = project.read_output(model, "validate", "validation.json")
    rows = {r["artifact"]: r for r in validation["rows"]}
    bench = project.read_output(model, "benchmark", "bench.json")
    published = project.read_output(model, "publish", "published.json")
    packages = project.read_output(model, "package", "package.json")
    first = str(bench["settings"]["batch_sizes"][0])
    quality = project.kind(model).quality_columns(project, model)
    metrics: dict[str, Any] = {}
    for s, r in rows.items():
        decoded = validation.get("packages", {}).get(s, r)  # an exact package decodes to the artifact itself
        mdl = description_length_bits(packages[s]["package_bytes"], decoded)
        latency, speedup = bench["results"][s][first], bench["speedup_vs_fp32"][s][first]
        metrics[s] = {
            "size_bytes": r["size_bytes"],
            "ratio_vs_fp32": round(r["ratio_vs_fp32"], 4),
            "entropy_bound_bytes": r["entropy_bound_bytes"],
            "package_bytes": packages[s]["package_bytes"],
            "package_vs_bound": packages[s]["coded_vs_bound"],
            "transfer_ratio": packages[s]["transfer_ratio_vs_fp32_onnx"],
            "package_exact": bool(packages[s]["exact"]),
            "package_quality": round(decoded[quality[0]], 4),  # of what the package decodes to
            "package_passed": bool(decoded["passed"]),
            "mdl_bits": None if mdl is None else round(mdl, 1),
            **{q: round(r[q], 4) for q in quality},
            "p50_ms": round(latency["p50_ms"], 3),
            "p95_ms": round(latency["p95_ms"], 3),
            "p99_ms": round(latency["p99_ms"], 3),
            "load_ms": round(latency["load_ms"], 1),
            "model_rss_mb": round(latency["model_rss_mb"], 1),
            "speedup_vs_fp32": round(speedup, 3),
            "passed": bool(r["passed"]),
            "reasons": list(r.get("reasons", [])),  # the tolerances it missed, for the report's "why not"
            # paired bootstrap intervals of (artifact - fp32), per metric with a per-example form
            "intervals": {q: {k: round(v, 4) for k, v in iv.items()} for q, iv in r.get("intervals", {}).items()},
            "int8_slower": s in bench["int8_slower"],
            "storage_only": storage_only(project, model, s, speedup),
            "uri": published["artifacts"].get(s, ""),
        }
        if s == "prune" and not r["passed"]:
            metrics[s]["suggestion"] = (
                suggest_sparsity(project, model) or "no sparsity the search measured passes alone"
            )
    return metrics


def pareto_runs(
    metrics: dict[str, Any], primary: str, entries: list[dict[str, Any]], version: str | None
) -> list[dict[str, Any]]:
    """Tonight's published artifacts with their place on the size x quality x latency
    front, then the front of every earlier version of this pool (from its manifest): the
    front kept across nightly runs, for ``dvc plots`` and the HTML report."""
    pts = [
        {"artifact": s, "size_bytes": m["size_bytes"], "quality": m[primary], "p50_ms": m["p50_ms"]}
        for s, m in metrics.items()
        if s != "baseline" and m["uri"]
    ]
    this = (version or "unpublished")[:8]
    rows = [{**p, "run": this, "current": True} for p in pareto_points(pts)]
    for e in entries:
        m = e["manifest"]
        if m.get("version") != version:
            run = f"{e['time'][:10]} {m.get('version', '?')[:8]}"
            rows += [{**p, "run": run, "current": False, "on_front": True} for p in m.get("pareto", [])]
    return rows


def selection(project: Project, metrics: dict[str, Any]) -> dict[str, Any]:
    """The published artifact the params' policy picks, and why."""
    how = policy(project)
    published = {
        s: {**m, "model_bytes": m["package_bytes"]} for s, m in metrics.items() if s != "baseline" and m["uri"]
    }
    pick, why = select(published, how)
    why = why if pick else "nothing was published"
    return {"policy": how, "selected": pick, "why": why, "uri": metrics[pick]["uri"] if pick else None}


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    metrics = artifact_metrics(project, model)
    write_json(out / "metrics.json", metrics)
    primary = project.kind(model).quality_columns(project, model)[0]
    # One point per candidate for `dvc plots`: size against quality, the primary metric.
    points = [
        {"artifact": s, "size_bytes": m["size_bytes"], "quality": m[primary], "p50_ms": m["p50_ms"]}
        for s, m in metrics.items()
    ]
    (out / "candidates.json").write_text(json.dumps(points, indent=2) + "\n")
    published = project.read_output(model, "publish", "published.json")
    chosen = selection(project, metrics)
    write_json(out / "selection.json", chosen)
    # One S3 session for the history the page plots and the upload beside the version.
    with s3io.available(project) as (s3, settings):
        entries = html_report.history(s3, settings, model, published["pool"])
        fronts = pareto_runs(metrics, primary, entries, published["version"])
        (out / "pareto.json").write_text(json.dumps(fronts, indent=2) + "\n")
        trials = project.stage_dir(model, "search") / "trials.json"
        page = html_report.render(
            project, model, metrics, published["pool"], out, entries, fronts,
            json.loads(trials.read_text()) if trials.is_file() else [], chosen,
        )  # fmt: skip
        if published["version"]:  # beside the artifacts it describes; serving reads selection.json
            prefix = f"{model}/{published['version']}/{published['pool']}"
            s3io.put_bytes(s3, settings, settings.publish_bucket, f"{prefix}/report.html", page.read_bytes())
            s3io.put_bytes(
                s3, settings, settings.publish_bucket, f"{prefix}/selection.json", json.dumps(chosen).encode()
            )
            log.info("%s: selected %s (%s); report at s3://%s/%s", model, chosen["selected"], chosen["why"],
                     settings.publish_bucket, prefix)  # fmt: skip
    return {
        "version": published["version"],
        "report": str(page.relative_to(project.root)),
        "selected": chosen["selected"],
    }


def _inputs(project: Project, model: str) -> dict[str, Path]:
    return {
        "validation": project.stage_dir(model, "validate") / "validation.json",
        "bench": project.stage_dir(model, "benchmark") / "bench.json",
        "published": project.stage_dir(model, "publish") / "published.json",
        "package": project.stage_dir(model, "package") / "package.json",
        # per-layer bars and storage-only flags read the artifacts and their records
        **{s: project.stage_dir(model, s) for s in ARTIFACT_STAGES},
    }


def _params(project: Project, model: str) -> list[str]:
    # the sections and recipes the artifacts' labels on the page are written from (present/labels.py)
    labelled = ["model.prune", "model.quantize", "model.factorize", "model.distill"]
    recipes = [f"recipes.{n}" for n in project.recipe_names(model)]
    return ["selection", "model.kind", "model.eval", "model.recipe", *labelled, *recipes]


STAGE = Stage(
    name="report",
    body=_body,
    inputs=_inputs,
    params=_params,
    # metrics and the plotted points are small and go to git; the page and figures to DVC
    outs={
        "outs": ["report.html", "selection.json"],
        "metrics": ["metrics.json"],
        "plots": {
            "candidates.json": {"template": "scatter", "x": "size_bytes", "y": "quality"},
            "pareto.json": {"template": "scatter", "x": "size_bytes", "y": "quality"},  # tonight's and every run's
            "plots": {"cache": True},  # the HTML report's figures, as images
        },
    },
)
