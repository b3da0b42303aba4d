"""Stage ``validate``: quality of every ONNX artifact against fp32, behind the quality gate.

Each artifact is evaluated on held-out data; its drop against the fp32 baseline is checked
against ``tolerance`` in params.yaml (maximum absolute drop per metric). Great Expectations
checks the evaluation data and the metrics table first: a failing suite stops the stage.
An artifact that misses a tolerance is marked failed, with the reason, and is not published.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model_compression.datasets import fashion_mnist as fm
from model_compression.datasets import text as text_data
from model_compression.info.onnx_weights import onnx_weight_bound
from model_compression.kinds import image_classifier, text_encoder
from model_compression.search.space import allowed_drop, shortfall
from tasks import custom, quality
from tasks.compress import calibration_feeds, eval_config
from tasks.project import Project
from tasks.stage import Stage, write_json

log = logging.getLogger("pipeline")
Tolerance = float | dict[str, float]  # absolute drop, or {"relative": r}

QUALITY = {
    "text-encoder": ["lee_pearson", "polarity_accuracy", "wordsim_spearman", "cosine_to_fp32"],
    "image-classifier": ["accuracy", "agreement_to_fp32"],
}


def quality_columns(project: Project, model: str) -> list[str]:
    """The quality metrics of ``model``, headline first: fixed per built-in kind, from the
    eval spec's task for a custom model."""
    kind = project.kind(model)
    return custom.quality(project, model) if kind == "custom" else QUALITY[kind]


def tolerance(project: Project, model: str) -> dict[str, Tolerance]:
    """``{metric: max drop}`` from ``models.<model>.tolerance``: a number is an absolute
    drop against fp32, ``{relative: r}`` a drop of r x |fp32 value| (r = 0.01: 1 %)."""
    tol = project.entry(model).get("tolerance") or {}
    if not isinstance(tol, dict):
        raise ValueError(f"{model}.tolerance must be a mapping of metric -> max drop, got {tol!r}")
    known = quality_columns(project, model)
    unknown = sorted(set(tol) - set(known))
    if unknown:
        raise ValueError(f"{model}.tolerance: unknown metric(s) {unknown}; known: {known}")
    out: dict[str, Tolerance] = {}
    for k, v in tol.items():
        if isinstance(v, dict):
            r = v.get("relative")
            if set(v) != {"relative"} or not isinstance(r, int | float) or not 0 <= r <= 1:
                raise ValueError(
                    f"{model}.tolerance.{k} must be a number or {{relative: r}} with r in [0, 1], got {v!r}"
                )
            out[k] = {"relative": float(r)}
        elif not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{model}.tolerance.{k} must be a non-negative number, got {v!r}")
        else:
            out[k] = float(v)
    return out


Evaluate = Callable[[Path, "np.ndarray | None"], tuple[dict[str, float], Any]]


GATE_KEYS = ("calibration_sha256", "max_size_bytes", "max_p50_ms")


def model_gates(project: Project, model: str) -> dict[str, Any]:
    """``gates.<model>`` of params.yaml: the calibration set's pinned sha256 and the size
    (bytes) and p50 latency (ms, serving batch) budgets; each optional."""
    section = project.params.get("gates") or {}
    if not isinstance(section, dict):
        raise ValueError(f"params.yaml gates must be a mapping of model -> gate settings, got {section!r}")
    found = section.get(model) or {}
    unknown = sorted(set(found) - set(GATE_KEYS))
    if unknown:
        raise ValueError(f"gates.{model}: unknown field(s) {unknown}; allowed: {list(GATE_KEYS)}")
    for key in ("max_size_bytes", "max_p50_ms"):
        if key in found and (not isinstance(found[key], int | float) or found[key] <= 0):
            raise ValueError(f"gates.{model}.{key} must be a positive number, got {found[key]!r}")
    return dict(found)


def evaluator(project: Project, model: str) -> Evaluate:
    """``evaluate(path, reference outputs or None) -> (metrics, outputs)`` for ``model``'s
    ONNX files; the fp32 baseline goes first (reference None) and its outputs are the
    reference of every other file."""
    kind = project.kind(model)
    if kind == "custom":
        return custom.evaluator(project, model)  # type: ignore[no-any-return]
    if kind == "text-encoder":
        cfg = eval_config(project, model)
        tok = project.stage_dir(model, "baseline")
        return lambda path, ref: text_encoder.evaluate(path, tok, cfg, project.threads, ref)
    limit = int((project.entry(model).get("eval") or {}).get("limit", 0))
    data = project.stage_dir(model, "fetch")
    return lambda path, ref: image_classifier.evaluate(path, data, project.threads, ref, limit)


def artifact_row(name: str, path: Path, metrics: dict[str, float]) -> dict[str, Any]:
    """One metrics-table row: size, weight statistics and entropy bound, quality."""
    bound = onnx_weight_bound(path)
    return {
        "artifact": name,
        "size_bytes": os.path.getsize(path),
        "weights": bound.numel,
        "weight_density": bound.density,
        "entropy_bound_bytes": bound.entropy_bytes,
        **metrics,
    }


def evaluate_artifacts(project: Project, model: str, files: dict[str, Path]) -> list[dict[str, Any]]:
    """One metrics row per ONNX file (name -> path); ``files`` starts with the fp32
    ``baseline``, which every other file is compared with."""
    if next(iter(files), None) != "baseline":
        raise ValueError(f"evaluate_artifacts: the first file must be the fp32 baseline, got {list(files)}")
    evaluate = evaluator(project, model)
    embeds = project.kind(model) == "text-encoder" or (
        project.kind(model) == "custom" and custom.eval_spec(project, model).task == "text-embedding"
    )
    rows, reference = [], None
    for stage, path in files.items():
        metrics, outputs = evaluate(path, reference)
        if reference is None:
            reference = outputs  # the baseline comes first: every other artifact compares to it
        row = artifact_row(stage, path, metrics)
        if embeds:  # mean L2 norm of the held-out embeddings: the release suite bounds it against fp32
            row["embedding_norm"] = float(np.linalg.norm(np.asarray(outputs, dtype=np.float64), axis=1).mean())
        rows.append(row)
        log.info("%s/%s: %s", model, stage, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return rows


def _check_eval_data(project: Project, model: str, docs: Path) -> dict[str, Any]:
    if project.kind(model) == "custom":
        ev = custom.eval_spec(project, model)
        return quality.check_custom_eval_data(custom.examples(project, model, "eval"), ev.task, docs=docs)
    if project.kind(model) == "text-encoder":
        pol = text_data.load_polarity()
        return quality.check_text_eval_data(pol.texts, pol.labels.tolist(), docs=docs)
    x, y = fm.load_split(project.stage_dir(model, "fetch"), "test")
    return quality.check_image_eval_data(y.tolist(), float(fm.normalize(x[:1000]).mean()), docs=docs)


def judge(rows: list[dict[str, Any]], tol: dict[str, Tolerance]) -> None:
    """Mark each row passed/failed against the baseline row, with reasons, in place."""
    base = rows[0]
    allowed = {metric: allowed_drop(spec, base[metric]) for metric, spec in tol.items()}
    for row in rows:
        drops = {metric: base[metric] - row[metric] for metric in tol}
        for metric, drop in drops.items():
            row[f"{metric}_drop"] = drop
        excess, reasons = shortfall(drops, allowed)
        row["ratio_vs_fp32"] = base["size_bytes"] / row["size_bytes"]
        row["passed"] = not reasons
        row["reasons"] = reasons
        row["shortfall"] = excess


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    tol = tolerance(project, model)
    docs = out / "gx_docs"  # each suite's Data Docs site, published beside the artifacts
    gates = [_check_eval_data(project, model, docs)]
    pin = model_gates(project, model).get("calibration_sha256")
    gates.append(quality.check_calibration_data(calibration_feeds(project, model), pin, docs=docs))
    rows = evaluate_artifacts(project, model, project.artifacts(model))
    gates.append(quality.check_metrics(rows, quality_columns(project, model), docs=docs))
    judge(rows, tol)
    for row in rows[1:]:
        if not row["passed"]:
            log.warning("%s/%s will not be published: %s", model, row["artifact"], "; ".join(row["reasons"]))
    write_json(out / "validation.json", {"rows": rows, "gates": gates, "tolerance": tol})
    return {
        "passed": [r["artifact"] for r in rows[1:] if r["passed"]],
        "failed": [r["artifact"] for r in rows[1:] if not r["passed"]],
    }


def _inputs(p: Project, m: str) -> dict[str, Path]:
    inputs = p.artifacts(m)
    inputs["tokenizer_or_data"] = p.stage_dir(m, "baseline" if p.kind(m) == "text-encoder" else "fetch")
    if p.kind(m) == "custom":
        inputs["split"] = p.stage_dir(m, "baseline") / custom.SPLIT
    return inputs


VALIDATE = Stage(
    name="validate",
    version=4,  # 2: Data Docs in gx_docs/; 3: calibration suite, embedding norms; 4: WordSim-353
    inputs=_inputs,
    params=lambda p, m: {
        "eval": p.entry(m).get("eval"),
        "tolerance": p.entry(m).get("tolerance"),
        "threads": p.threads,
        "gates": model_gates(p, m),
    },
    body=_body,
)


def validate(model: str, root: str = ".") -> dict[str, Any]:
    """Evaluate every artifact of ``model`` and gate it; writes ``validation.json``."""
    return VALIDATE.run(model, root)


def load_rows(project: Project, model: str) -> dict[str, dict[str, Any]]:
    """The validated rows of ``model``, by artifact name, in ``ARTIFACT_STAGES`` order."""
    rows = project.read_output(model, "validate", "validation.json")["rows"]
    return {r["artifact"]: r for r in rows}
