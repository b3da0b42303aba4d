"""Stage ``teach``: the teacher's outputs on the training text, computed once for distillation.

Its own stage, keyed by the baseline, the corpus (the kind's data inputs and eval split)
and the ``teach`` section only: changing the student's settings re-runs ``distill``, never
this. A kind whose distillation runs its teacher directly (the CNN's logit KD) skips it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.core.project import Project
from tasks.core.skip import skippable
from tasks.core.stage import Stage


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    return project.kind(model).teach(project, model, out)


STAGE = Stage(
    name="teach",
    body=skippable(_body, "teach"),
    inputs=lambda p, m: {"baseline": p.stage_dir(m, "baseline"), **p.kind(m).data_inputs(p, m)},
    params=lambda p, m: ["model.kind", "model.eval", "model.teach"],
    uses=lambda p, m: ["teach"] if p.kind(m).teach_config else [],  # the others skip it
    pinned=lambda p, m: bool(p.kind(m).teach_config) and p.section(m, "teach") is not None,  # training targets
)
