"""Stage ``validate``: quality of every ONNX artifact against fp32, behind the quality gate.

Each artifact is evaluated on held-out data with its kind's evaluator; its drop against
the fp32 baseline is checked against ``tolerance`` in params.yaml. Great Expectations
checks the evaluation data, the calibration set and the metrics table first: a failing
suite stops the stage. An artifact that misses a tolerance is marked failed, with the
reason, and is not published.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.core.project import ARTIFACT_STAGES, Project
from tasks.core.stage import Stage, write_json
from tasks.evaluation import evaluate_artifacts
from tasks.gates import expectations
from tasks.gates.tolerance import judge, model_gates, tolerance

log = logging.getLogger("pipeline")


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    kind = project.kind(model)
    tol = tolerance(project, model)
    docs = out / "gx_docs"  # each suite's Data Docs site, published beside the artifacts
    check = kind.eval_data_check(project, model)
    gates = [getattr(expectations, check.suite)(**check.kwargs, docs=docs)]
    pin = model_gates(project, model).get("calibration_sha256")
    gates.append(expectations.check_calibration_data(kind.calibration(project, model), pin, docs=docs))
    rows = evaluate_artifacts(project, model, project.artifacts(model))
    gates.append(expectations.check_metrics(rows, kind.quality_columns(project, model), docs=docs))
    judge(rows, tol)
    for row in rows[1:]:
        if not row["passed"]:
            log.warning("%s/%s will not be published: %s", model, row["artifact"], "; ".join(row["reasons"]))
    write_json(out / "validation.json", {"rows": rows, "gates": gates, "tolerance": tol})
    return {
        "passed": [r["artifact"] for r in rows[1:] if r["passed"]],
        "failed": [r["artifact"] for r in rows[1:] if not r["passed"]],
    }


def _inputs(project: Project, model: str) -> dict[str, Path]:
    artifacts = {s: project.stage_dir(model, s) for s in ARTIFACT_STAGES}  # a skipped one is an empty folder
    return {**artifacts, **project.kind(model).data_inputs(project, model)}


STAGE = Stage(
    name="validate",
    body=_body,
    inputs=_inputs,
    params=lambda p, m: ["threads", "model.kind", "model.eval", "model.tolerance", f"gates.{m}"],
    uses=lambda p, m: ["evaluate", "calibration"],
)
