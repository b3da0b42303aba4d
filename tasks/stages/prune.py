"""Stage ``prune``: magnitude pruning of the fp32 weights at the params' sparsity.

``scope``: one global threshold, the same sparsity per tensor, or (``sensitive``) each
tensor's sparsity allocated from its measured sensitivity on calibration samples, so that a
fragile layer (a depthwise kernel) keeps its weights. Storage-only: zeros shrink the
entropy bound and the transfer package, not the dense ONNX file or its latency. A model
with only an ONNX graph is pruned on its initializers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_compression.layers import n_params
from tasks import chains
from tasks.core.project import Project
from tasks.core.skip import skippable
from tasks.core.stage import Stage


def _sensitive(project: Project, model: str) -> bool:
    return (project.section(model, "prune") or {}).get("scope") == "sensitive"


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    fp32 = project.kind(model).load(project, model)
    steps = [chains.prune_step(chains.config(project, model, "prune"))]
    done, net = chains.apply(project, model, steps, out / "model.onnx", torch_model=fp32)
    sizes = {} if net is None else {"parameters": n_params(net)}
    return {**{k: v for k, v in done[0].items() if k != "step"}, **sizes, "storage_only": True}


def _inputs(project: Project, model: str) -> dict[str, Path]:
    extra = project.kind(model).data_inputs(project, model) if _sensitive(project, model) else {}
    return {"baseline": project.stage_dir(model, "baseline"), **extra}


def _params(project: Project, model: str) -> list[str]:
    return ["seed", "threads", "model.kind", "model.prune", *(["model.eval"] if _sensitive(project, model) else [])]


STAGE = Stage(
    name="prune",
    body=skippable(_body, "prune"),
    inputs=_inputs,
    params=_params,
    uses=lambda p, m: ["load", "export", *(["calibration"] if _sensitive(p, m) else [])],
    code=lambda p, m: chains.step_modules("prune", *(["prune_sensitive"] if _sensitive(p, m) else [])),
)
