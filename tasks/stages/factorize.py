"""Stage ``factorize``: truncated SVD of Linear (and, by config, conv and embedding)
layers where it saves parameters, the rank by retained energy or a parameter budget. A
model with only an ONNX graph has its MatMul/Gemm weights split on the graph.
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
    steps = [("factorize", chains.config(project, model, "factorize"))]
    done, net = chains.apply(project, model, steps, out / "model.onnx", torch_model=fp32)
    info = {k: v for k, v in done[0].items() if k not in ("step", "onnx_bytes")}
    if fp32 is None or net is None:
        return info
    return {**info, "parameters_before": n_params(fp32), "layers_factorized": len(info["ranks"])}


STAGE = Stage(
    name="factorize",
    body=skippable(_body, "factorize"),
    inputs=lambda p, m: {"baseline": p.stage_dir(m, "baseline")},
    params=lambda p, m: ["seed", "threads", "model.kind", "model.factorize"],
    uses=lambda p, m: ["load", "export"],
    code=lambda p, m: chains.step_modules("factorize"),
)
