"""What a run prints: a log line per benchmarked artifact, and the per-model table."""

from __future__ import annotations

import logging
from typing import Any

from tasks.core.project import Project

log = logging.getLogger("pipeline")


def summarize(model: str, pool: str, bench: dict[str, Any]) -> None:
    """Log one line per artifact: p50, speed-up, memory, and any flag."""
    serving = str(bench["serving_batch"])
    for name, res in bench["results"].items():
        r = res[serving]
        flags = [f for f, on in (("noisy", r["noisy"]), ("int8 slower than fp32", name in bench["int8_slower"])) if on]
        log.info(
            "%s/%s on %s: p50 %.2f ms at batch %s (%.2fx fp32), load %.0f ms, model RSS %.0f MiB%s",
            model,
            name,
            pool,
            r["p50_ms"],
            serving,
            bench["speedup_vs_fp32"][name][serving],
            r["load_ms"],
            r["model_rss_mb"],
            f" [{', '.join(flags)}]" if flags else "",
        )


def table(project: Project, model: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the per-model summary table printed at the end of a run."""
    metrics = project.read_output(model, "report", "metrics.json")
    quality = project.kind(model).quality_columns(project, model)
    header = [
        "artifact",
        "ONNX bytes",
        "x smaller",
        "package bytes",
        "x smaller (transfer)",
        f"package {quality[0]}",
        "entropy bound",
        "coded/bound",
        *quality,
        *(["MDL bits"] if metrics["baseline"]["mdl_bits"] is not None else []),
        "p50 ms",
        "speed-up",
        "published",
    ]
    body = []
    for s in (s for s in project.artifact_names(model) if s in metrics):  # metrics.json is key-sorted
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
                _package_quality(m, quality[0]),
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


def _package_quality(m: dict[str, Any], headline: str) -> str:
    """The headline metric of what the package decodes to: the artifact's own when the
    package is exact; measured on the decoded model otherwise, flagged if it fails."""
    if m.get("package_exact", True):
        return "exact"
    return f"{m['package_quality']:.4f}" + ("" if m.get("package_passed", True) else " (fails tolerance)")


WIDTH = 120  # the terminal a run's final table must fit


def compact_table(project: Project, model: str) -> tuple[str, list[str], list[list[str]]]:
    """(title, header, rows) of the table a run prints last, within ``WIDTH`` columns:
    ratios against the fp32 ONNX file, quality, speed, and whether each artifact was
    published or why not. Bytes, bounds and the full URIs are in the report
    (``data/<model>/report/report.html``) and in ``table``."""
    metrics = project.read_output(model, "report", "metrics.json")
    quality = project.kind(model).quality_columns(project, model)
    header = ["artifact", "ONNX x", "package x", *quality, "p50 ms", "speed-up", "published"]
    body = []
    for s in (s for s in project.artifact_names(model) if s in metrics):
        m = metrics[s]
        body.append(
            [
                "fp32" if s == "baseline" else s,
                f"{m['ratio_vs_fp32']:.1f}",
                f"{m['transfer_ratio']:.1f}",
                *(f"{m[q]:.4f}" for q in quality),
                f"{m['p50_ms']:.2f}",
                f"{m['speedup_vs_fp32']:.2f}",
                publish_status(s, m),
            ]
        )
    for s, reason in project.skipped(model).items():
        body.append([s, *("-" for _ in header[1:-1]), f"skipped: {reason}"])
    return f"{model}: {_version(project, model)}", header, body


def publish_status(artifact: str, m: dict[str, Any]) -> str:
    """``reference`` (fp32), ``published``, or ``no: <why>`` (a row of metrics.json)."""
    if artifact == "baseline":
        return "reference"
    if m["uri"]:
        return "published"
    # a passing int8 artifact is held back when slower than fp32 (pools.<pool>.publish_slower_int8)
    return "no: int8 slower than fp32 here" if m.get("int8_slower") and m["passed"] else "no: failed tolerance"


def _version(project: Project, model: str) -> str:
    try:
        published = project.read_output(model, "publish", "published.json")
    except (FileNotFoundError, KeyError):
        return "not published"
    return f"version {published.get('version') or '-'} (full URIs: data/{model}/report/report.html)"
