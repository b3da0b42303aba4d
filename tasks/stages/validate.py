"""Stage ``validate``: quality of every ONNX artifact against fp32, behind the quality gate.

Each artifact is evaluated on held-out data with its kind's evaluator; its drop against
the fp32 baseline is checked against ``tolerance`` in params.yaml. So is the model each
inexact transfer package decodes to (``packages`` in validation.json): a package ratio
is never reported without the quality of exactly those bytes. Great Expectations
checks the evaluation data, the calibration set and the metrics table first: a failing
suite stops the stage. An artifact that misses a tolerance is marked failed, with the
reason, and is not published.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from model_compression.info.package import rebuild
from tasks.core.project import ARTIFACT_STAGES, Project
from tasks.core.stage import Stage, write_json
from tasks.evaluation import evaluate_artifacts
from tasks.gates import expectations
from tasks.gates.regression import bootstrap
from tasks.gates.tolerance import judge, model_gates, tolerance

log = logging.getLogger("pipeline")
PACKAGED = ".mcpk"  # the row of what an inexact transfer package decodes to


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    kind = project.kind(model)
    tol = tolerance(project, model)
    docs = out / "gx_docs"  # each suite's Data Docs site, published beside the artifacts
    check = kind.eval_data_check(project, model)
    gates = [getattr(expectations, check.suite)(**check.kwargs, docs=docs)]
    pin = model_gates(project, model).get("calibration_sha256")
    gates.append(expectations.check_calibration_data(kind.calibration(project, model), pin, docs=docs))
    with tempfile.TemporaryDirectory(prefix="decoded-") as tmp:
        files = {**project.artifacts(model), **decoded_packages(project, model, Path(tmp))}
        rows = evaluate_artifacts(project, model, files, bootstrap(project))
    gates.append(expectations.check_metrics(rows, kind.quality_columns(project, model), docs=docs))
    own = {n: tolerance(project, model, n) for n in project.recipe_names(model)}  # a recipe may set its own
    judge(rows, tol, {**own, **{n + PACKAGED: t for n, t in own.items()}})
    packages = {r["artifact"].removesuffix(PACKAGED): r for r in rows if r["artifact"].endswith(PACKAGED)}
    rows = [r for r in rows if not r["artifact"].endswith(PACKAGED)]
    for row in rows[1:]:
        if not row["passed"]:
            log.warning("%s/%s will not be published: %s", model, row["artifact"], "; ".join(row["reasons"]))
    tolerances = {"default": tol, **{n: t for n, t in own.items() if t != tol}}
    write_json(out / "validation.json", {"rows": rows, "packages": packages, "gates": gates, "tolerance": tolerances})
    return {
        "passed": [r["artifact"] for r in rows[1:] if r["passed"]],
        "failed": [r["artifact"] for r in rows[1:] if not r["passed"]],
        "inexact_packages_passed": sorted(name for name, r in packages.items() if r["passed"]),
    }


def decoded_packages(project: Project, model: str, folder: Path) -> dict[str, Path]:
    """``{"<artifact>.mcpk": the ONNX file it decodes to}`` of every inexact package (float
    weights coded at 8 bits): what a user who fetches the package would actually serve."""
    table = project.read_output(model, "package", "package.json")
    out = {}
    for name, entry in table.items():
        if isinstance(entry, dict) and entry.get("exact") is False:  # other keys are not packages
            out[name + PACKAGED] = rebuild(
                project.stage_dir(model, "package") / f"{name}.mcpk", folder / f"{name}.onnx"
            )
    return out


def _inputs(project: Project, model: str) -> dict[str, Path]:
    artifacts = {s: project.stage_dir(model, s) for s in ARTIFACT_STAGES}  # a skipped one is an empty folder
    packages = {"package": project.stage_dir(model, "package")}
    return {**artifacts, **packages, **project.kind(model).data_inputs(project, model)}


STAGE = Stage(
    name="validate",
    body=_body,
    inputs=_inputs,
    params=lambda p, m: [
        "seed",
        "threads",
        "model.kind",
        "model.eval",
        "model.tolerance",
        "model.recipe",
        *(f"recipes.{n}" for n in p.recipe_names(m)),
        "regression",
        f"gates.{m}",
    ],
    uses=lambda p, m: ["evaluate", "calibration"],
)
