"""Stage ``report``: per model, ``metrics.json`` for ``dvc metrics show``, ``candidates.json``
and ``plots/*.png`` for ``dvc plots``, and the HTML report (tasks/html_report.py), which
is also uploaded beside the published version."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from model_compression.search.pareto import Direction, front
from tasks import html_report, selection
from tasks import s3 as s3io
from tasks.project import ARTIFACT_STAGES, Project
from tasks.stage import Stage, read_record, write_json
from tasks.validate import load_rows, quality_columns

log = logging.getLogger("pipeline")


# below this speed-up over fp32 (at the serving batch), a sparse artifact is storage-only
STORAGE_ONLY_SPEEDUP = 1.05


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    rows = load_rows(project, model)
    bench = project.read_output(model, "benchmark", "bench.json")
    published = project.read_output(model, "publish", "published.json")
    packages = project.read_output(model, "package", "package.json")
    first = str(bench["settings"]["batch_sizes"][0])
    metrics: dict[str, Any] = {}
    primary = quality_columns(project, model)[0]
    for s, r in rows.items():
        metrics[s] = {
            "size_bytes": r["size_bytes"],
            "ratio_vs_fp32": round(r["ratio_vs_fp32"], 4),
            "entropy_bound_bytes": r["entropy_bound_bytes"],
            "package_bytes": packages[s]["package_bytes"],
            "package_vs_bound": packages[s]["coded_vs_bound"],
            "transfer_ratio": packages[s]["transfer_ratio_vs_fp32_onnx"],
            "mdl_bits": mdl_bits(packages[s]["package_bytes"], r),
            **{q: round(r[q], 4) for q in quality_columns(project, model)},
            "p50_ms": round(bench["results"][s][first]["p50_ms"], 3),
            "p95_ms": round(bench["results"][s][first]["p95_ms"], 3),
            "p99_ms": round(bench["results"][s][first]["p99_ms"], 3),
            "load_ms": round(bench["results"][s][first]["load_ms"], 1),
            "model_rss_mb": round(bench["results"][s][first]["model_rss_mb"], 1),
            "speedup_vs_fp32": round(bench["speedup_vs_fp32"][s][first], 3),
            "passed": bool(r["passed"]),
            "int8_slower": s in bench["int8_slower"],
            "storage_only": storage_only(project, model, s, bench["speedup_vs_fp32"][s][first]),
            "uri": published["artifacts"].get(s, ""),
        }
    write_json(out / "metrics.json", metrics)
    # One point per candidate for `dvc plots`: size against quality, the primary metric.
    points = [
        {"artifact": s, "size_bytes": m["size_bytes"], "quality": m[primary], "p50_ms": m["p50_ms"]}
        for s, m in metrics.items()
    ]
    (out / "candidates.json").write_text(json.dumps(points, indent=2) + "\n")
    # One S3 session for the history the page plots and the upload beside the version
    # (under `dvc repro` each session may start and stop the embedded server).
    with s3io.available(project) as (s3, settings):
        entries = html_report.history(s3, settings, model, published["pool"])
        fronts = pareto_runs(metrics, primary, entries, published["version"])
        (out / "pareto.json").write_text(json.dumps(fronts, indent=2) + "\n")
        trials = project.stage_dir(model, "search") / "trials.json"
        page = html_report.render(
            project, model, metrics, published["pool"], out, entries, fronts,
            json.loads(trials.read_text()) if trials.is_file() else [],
        )  # fmt: skip
        how = selection.policy(project)
        pick, why = selection.select(metrics, how)
        chosen = {"policy": how, "selected": pick, "why": why, "uri": metrics[pick]["uri"] if pick else None}
        write_json(out / "selection.json", chosen)
        if published["version"]:  # beside the artifacts it describes; serving reads selection.json
            prefix = f"{model}/{published['version']}/{published['pool']}"
            s3io.put_bytes(s3, settings, settings.publish_bucket, f"{prefix}/report.html", page.read_bytes())
            s3io.put_bytes(
                s3, settings, settings.publish_bucket, f"{prefix}/selection.json", json.dumps(chosen).encode()
            )
            log.info("%s: selected %s (%s); report at s3://%s/%s", model, pick, why, settings.publish_bucket, prefix)
    return {"version": published["version"], "report": str(page.relative_to(project.root)), "selected": pick}


REPORT = Stage(
    name="report",
    version=9,  # 6: Pareto front across runs, search trials; 7: runs named by version; 8: figure; 9: storage-only
    inputs=lambda p, m: {
        "validation": p.stage_dir(m, "validate") / "validation.json",
        "bench": p.stage_dir(m, "benchmark") / "bench.json",
        "published": p.stage_dir(m, "publish") / "published.json",
        "package": p.stage_dir(m, "package") / "package.json",
        # per-layer bars (a technique skipped for this model has no artifact to plot)
        **{s: path for s, path in p.artifacts(m).items() if s in ("prune", "quantize")},
        "search": p.stage_dir(m, "search"),  # the trials plotted beside the front
    },
    params=lambda p, m: {"selection": selection.policy(p)},
    body=_body,
)


OBJECTIVES: dict[str, Direction] = {"size_bytes": "min", "quality": "max", "p50_ms": "min"}


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
    on = front(pts, OBJECTIVES) if pts else []
    this = (version or "unpublished")[:8]
    rows = [{**p, "run": this, "current": True, "on_front": keep} for p, keep in zip(pts, on, strict=True)]
    for e in entries:
        m = e["manifest"]
        if m.get("version") != version:
            run = f"{e['time'][:10]} {m.get('version', '?')[:8]}"
            rows += [{**p, "run": run, "current": False, "on_front": True} for p in m.get("pareto", [])]
    return rows


def mdl_bits(package_bytes: int, row: dict[str, Any]) -> float | None:
    """Description length in bits: the model (its transfer package) plus the evaluation
    labels coded with the model's predictions (their NLL). None where a task has no labels
    to code (sentence embeddings)."""
    data_bits = row.get("test_nll_bits", row.get("nll_bits"))
    return None if data_bits is None else round(8 * package_bytes + float(data_bits), 1)


def report(model: str, root: str = ".") -> dict[str, Any]:
    """Write ``data/<model>/report/metrics.json`` from validation, benchmark and publish."""
    return REPORT.run(model, root)


def storage_only(project: Project, model: str, stage: str, speedup: float) -> bool:
    """A sparse or weight-shared artifact (its stage says so) that runs no faster than fp32
    on onnxruntime: its zeros pay off only in the transfer package, not at serving time."""
    record = read_record(project.stage_dir(model, stage)) or {}
    return bool(record.get("summary", {}).get("storage_only")) and speedup < STORAGE_ONLY_SPEEDUP


def table(project: Project, model: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the per-model summary table printed at the end of a run."""
    metrics = project.read_output(model, "report", "metrics.json")
    quality = quality_columns(project, model)
    header = [
        "artifact",
        "ONNX bytes",
        "x smaller",
        "package bytes",
        "x smaller (transfer)",
        "entropy bound",
        "coded/bound",
        *quality,
        *(["MDL bits"] if metrics["baseline"]["mdl_bits"] is not None else []),
        "p50 ms",
        "speed-up",
        "published",
    ]
    body = []
    for s in (s for s in ARTIFACT_STAGES if s in metrics):  # metrics.json is key-sorted
        m = metrics[s]
        why = "int8 slower than fp32 here" if m.get("int8_slower") else "failed tolerance"
        uri = m["uri"] or ("reference" if s == "baseline" else f"not published ({why})")
        body.append(
            [
                "fp32" if s == "baseline" else s + (" (storage-only)" if m.get("storage_only") else ""),
                f"{m['size_bytes']:,}",
                f"{m['ratio_vs_fp32']:.2f}",
                f"{m['package_bytes']:,}",
                f"{m['transfer_ratio']:.2f}",
                f"{m['entropy_bound_bytes']:,}",
                f"{m['package_vs_bound']:.4f}",
                *(f"{m[q]:.4f}" for q in quality),
                *([f"{m['mdl_bits']:,.0f}"] if m["mdl_bits"] is not None else []),
                f"{m['p50_ms']:.2f}",
                f"{m['speedup_vs_fp32']:.2f}",
                uri,
            ]
        )
    for s, reason in project.skipped(model).items():
        body.append([s, *("-" for _ in header[1:-1]), f"skipped: {reason}"])
    return header, body
