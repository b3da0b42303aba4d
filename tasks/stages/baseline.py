"""Stage ``baseline``: the fp32 reference of a model, as torch weights and ``model.onnx``.

What that takes is the kind's: a pretrained encoder is copied and exported, the image
classifier is trained here (deterministically from the seed: cached, so a nightly run
retrains only when its code, params or data change), a team's model is checked against
its declared inputs and its evaluation/calibration split recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.core.project import Project
from tasks.core.stage import Stage


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    return project.kind(model).build_baseline(project, model, out)


def _inputs(project: Project, model: str) -> dict[str, Path]:
    return {"fetch": project.stage_dir(model, "fetch"), **project.kind(model).baseline_inputs(project, model)}


STAGE = Stage(
    name="baseline",
    body=_body,
    inputs=_inputs,
    params=lambda p, m: ["seed", "threads", "model.kind", *(f"model.{s}" for s in p.kind(m).baseline_sections)],
    uses=lambda p, m: ["baseline"],
    pinned=lambda p, m: bool(p.section(m, "train")),  # a model trained here: kernel-ISA pins
)
