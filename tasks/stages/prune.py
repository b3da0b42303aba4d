"""Stage ``prune``: magnitude pruning of the fp32 weights at the params' sparsity.

Storage-only: zeros shrink the entropy bound and the transfer package, not the dense ONNX
file or its latency. A model with only an ONNX graph is pruned on its initializers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_compression.layers import n_params
from tasks import chains
from tasks.core.project import Project
from tasks.core.skip import skippable
from tasks.core.stage import Stage


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    fp32 = project.kind(model).load(project, model)
    steps = [("prune", chains.config(project, model, "prune"))]
    done, net = chains.apply(project, model, steps, out / "model.onnx", torch_model=fp32)
    sizes = {} if net is None else {"parameters": n_params(net)}
    return {**{k: v for k, v in done[0].items() if k != "step"}, **sizes, "storage_only": True}


STAGE = Stage(
    name="prune",
    body=skippable(_body, "prune"),
    inputs=lambda p, m: {"baseline": p.stage_dir(m, "baseline")},
    params=lambda p, m: ["seed", "threads", "model.kind", "model.prune"],
    uses=lambda p, m: ["load", "export"],
    code=lambda p, m: chains.step_modules("prune"),
)
