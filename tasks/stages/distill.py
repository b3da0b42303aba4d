"""Stage ``distill``: a smaller student trained against the fp32 teacher.

How depends on the kind: a layer-drop MiniLM with embedding KD on the background corpus,
a thinner CNN with logit KD, a team's factory model with KD on its calibration split. A
model with no student to build (an ONNX file, say) is skipped with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from model_compression.layers import n_params
from tasks.core.project import Project
from tasks.core.skip import skippable
from tasks.core.stage import Stage


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    kind = project.kind(model)
    teacher = kind.load(project, model)
    assert teacher is not None, "a kind with no torch model has a skip reason for distill"
    student, trained = kind.distill(project, model, teacher)
    history = trained if isinstance(trained, dict) else {"losses": trained}
    kind.export(project, model, student, out / "model.onnx")
    extra = {k: history[k] for k in ("val_cosine", "resumed_at") if k in history}
    return {
        "teacher_parameters": n_params(teacher),
        "parameters": n_params(student),
        "steps": len(history["losses"]),
        "loss_first": history["losses"][0],
        "loss_last": history["losses"][-1],
        "onnx_bytes": os.path.getsize(out / "model.onnx"),
        **extra,
    }


STAGE = Stage(
    name="distill",
    body=skippable(_body, "distill"),
    inputs=lambda p, m: {
        "baseline": p.stage_dir(m, "baseline"),
        **p.kind(m).data_inputs(p, m),
        **({"teach": p.stage_dir(m, "teach")} if p.kind(m).teach_config else {}),
    },
    params=lambda p, m: ["seed", "threads", "model.kind", "model.distill", "model.eval"],
    uses=lambda p, m: ["load", "distill", "export"],
    pinned=lambda p, m: p.section(m, "distill") is not None,
)
