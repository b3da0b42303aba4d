"""Stage ``publish``: upload this machine's pool's passing artifacts, their transfer
packages, manifest and model card to S3 (``tasks/publishing.py``).

Two gates first, either of which stops the publish before any upload: the Great
Expectations release-table suite and the regression gate against the version last
published. A version without a manifest is incomplete and never referenced; ``latest``
moves only after the manifest exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.core.project import ARTIFACT_STAGES, Project
from tasks.core.stage import Stage, write_json
from tasks.evaluation import load_rows
from tasks.pools import local_pool
from tasks.publishing import publish_artifacts


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    files = project.artifacts(model)
    bench = project.read_output(model, "benchmark", "bench.json")
    published = publish_artifacts(project, model, local_pool(project), files, load_rows(project, model), bench)
    write_json(out / "published.json", published)
    return {"version": published["version"], "published": sorted(published["artifacts"])}


def _inputs(project: Project, model: str) -> dict[str, Path]:
    return {
        **{s: project.stage_dir(model, s) for s in ARTIFACT_STAGES},
        "validate": project.stage_dir(model, "validate"),  # validation.json, and the gates' Data Docs
        "bench": project.stage_dir(model, "benchmark") / "bench.json",  # int8 slower than fp32 is not published
        "package": project.stage_dir(model, "package"),  # transfer packages go beside the ONNX files
        **project.kind(model).data_inputs(project, model),  # the regression gate evaluates again
    }


STAGE = Stage(
    name="publish",
    body=_body,
    inputs=_inputs,
    # the version id hashes the whole resolved entry
    params=lambda p, m: [
        "seed",
        "threads",
        "s3",
        "pools",
        "regression",
        f"gates.{m}",
        *(f"model.{s}" for s in p.resolved(m)),
    ],
    uses=lambda p, m: ["evaluate"],
)
