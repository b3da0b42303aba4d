"""Stage ``validate``: quality of every ONNX artifact against fp32, behind the quality gate.

Each artifact is evaluated on held-out data; its drop against the fp32 baseline is checked
against ``tolerance`` in params.yaml (maximum absolute drop per metric). Great Expectations
checks the evaluation data and the metrics table first: a failing suite stops the stage.
An artifact that misses a tolerance is marked failed, with the reason, and is not published.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from model_compression.datasets import fashion_mnist as fm
from model_compression.datasets import text as text_data
from model_compression.info.onnx_weights import onnx_weight_bound
from model_compression.kinds import image_classifier, text_encoder
from tasks import custom, quality
from tasks.compress import eval_config
from tasks.project import Project
from tasks.stage import Stage, write_json

log = logging.getLogger("pipeline")

QUALITY = {
    "text-encoder": ["lee_pearson", "polarity_accuracy", "cosine_to_fp32"],
    "image-classifier": ["accuracy", "agreement_to_fp32"],
}


def quality_columns(project: Project, model: str) -> list[str]:
    """The quality metrics of ``model``, headline first: fixed per built-in kind, from the
    eval spec's task for a custom model."""
    kind = project.kind(model)
    return custom.quality(project, model) if kind == "custom" else QUALITY[kind]


def tolerance(project: Project, model: str) -> dict[str, float]:
    tol = project.entry(model).get("tolerance") or {}
    known = quality_columns(project, model)
    unknown = sorted(set(tol) - set(known))
    if unknown:
        raise ValueError(f"{model}.tolerance: unknown metric(s) {unknown}; known: {known}")
    for k, v in tol.items():
        if not isinstance(v, int | float) or v < 0:
            raise ValueError(f"{model}.tolerance.{k} must be a non-negative number, got {v!r}")
    return {k: float(v) for k, v in tol.items()}


def evaluate_artifacts(project: Project, model: str, files: dict[str, Path]) -> list[dict[str, Any]]:
    """One metrics row per ONNX file (name -> path); ``files`` starts with the fp32
    ``baseline``, which every other file is compared with."""
    if next(iter(files), None) != "baseline":
        raise ValueError(f"evaluate_artifacts: the first file must be the fp32 baseline, got {list(files)}")
    kind = project.kind(model)
    rows, reference = [], None
    evaluate_custom = custom.evaluator(project, model) if kind == "custom" else None
    for stage, path in files.items():
        if evaluate_custom is not None:
            metrics, outputs = evaluate_custom(path, reference)
        elif kind == "text-encoder":
            cfg = eval_config(project, model)
            metrics, outputs = text_encoder.evaluate(
                path, project.stage_dir(model, "baseline"), cfg, project.threads, reference
            )
        else:
            limit = int((project.entry(model).get("eval") or {}).get("limit", 0))
            metrics, outputs = image_classifier.evaluate(
                path, project.stage_dir(model, "fetch"), project.threads, reference, limit
            )
        if reference is None:
            reference = outputs  # the baseline comes first: every other artifact compares to it
        bound = onnx_weight_bound(path)
        rows.append(
            {
                "artifact": stage,
                "size_bytes": os.path.getsize(path),
                "weights": bound.numel,
                "weight_density": bound.density,
                "entropy_bound_bytes": bound.entropy_bytes,
                **metrics,
            }
        )
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


def judge(rows: list[dict[str, Any]], tol: dict[str, float]) -> None:
    """Mark each row passed/failed against the baseline row, with reasons, in place."""
    base = rows[0]
    for row in rows:
        reasons = []
        for metric, max_drop in tol.items():
            drop = base[metric] - row[metric]
            row[f"{metric}_drop"] = drop
            if drop > max_drop:
                reasons.append(f"{metric} dropped {drop:.4f} > tolerance {max_drop:.4f}")
        row["ratio_vs_fp32"] = base["size_bytes"] / row["size_bytes"]
        row["passed"] = not reasons
        row["reasons"] = reasons


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    tol = tolerance(project, model)
    docs = out / "gx_docs"  # each suite's Data Docs site, published beside the artifacts
    gates = [_check_eval_data(project, model, docs)]
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
    version=2,  # 2: Data Docs in gx_docs/
    inputs=_inputs,
    params=lambda p, m: {
        "eval": p.entry(m).get("eval"),
        "tolerance": p.entry(m).get("tolerance"),
        "threads": p.threads,
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
