"""Quality rows of ONNX artifacts: the kind's evaluator, then size, weight statistics and
entropy bound. The validate stage, the recipe search and a pool's own int8 artifact all
score files through here, against the fp32 baseline's outputs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from model_compression.evaluate.result import Evaluation
from model_compression.info.onnx_weights import onnx_weight_bound
from model_compression.stats.bootstrap import Bootstrap
from tasks.core.project import Project

log = logging.getLogger("pipeline")


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


def intervals(result: Evaluation, base: Evaluation, boot: Bootstrap) -> dict[str, dict[str, float]]:
    """``{metric: paired bootstrap interval of (result - fp32)}`` for every metric both
    evaluations have a per-example form of (the same examples, resampled together)."""
    mine, theirs = result.statistics(), base.statistics()
    return {m: boot.paired(stat, theirs[m][0], n).as_dict() for m, (stat, n) in mine.items() if m in theirs}


def evaluate_artifacts(
    project: Project, model: str, files: dict[str, Path], boot: Bootstrap | None = None, split: str = "test"
) -> list[dict[str, Any]]:
    """One metrics row per ONNX file (name -> path), on the kind's ``split``; ``files``
    starts with the fp32 ``baseline``, which every other file is compared with. With
    ``boot``, each other row carries ``intervals``: its paired bootstrap intervals against fp32."""
    if next(iter(files), None) != "baseline":
        raise ValueError(f"evaluate_artifacts: the first file must be the fp32 baseline, got {list(files)}")
    kind = project.kind(model)
    evaluate = kind.evaluator(project, model, split)
    embeds = kind.embeds(project, model)
    rows, reference, base = [], None, None
    for stage, path in files.items():
        result: Evaluation = evaluate(path, reference)
        if base is None:
            base, reference = result, result.outputs  # the baseline comes first: every other artifact compares to it
        row = artifact_row(stage, path, result.metrics)
        if boot is not None and result is not base:
            row["intervals"] = intervals(result, base, boot)
        if embeds:  # mean L2 norm of the held-out embeddings: the release suite bounds it against fp32
            row["embedding_norm"] = float(np.linalg.norm(np.asarray(result.outputs, dtype=np.float64), axis=1).mean())
        rows.append(row)
        log.info("%s/%s: %s", model, stage, ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()))
    return rows


def load_rows(project: Project, model: str) -> dict[str, dict[str, Any]]:
    """The validated rows of ``model`` (``validate/validation.json``), by artifact name."""
    rows = project.read_output(model, "validate", "validation.json")["rows"]
    return {r["artifact"]: r for r in rows}
