"""Stage ``quantize``: onnxruntime int8 of the fp32 graph, for this machine's pool.

Dynamic (weights int8, activations quantized at run time) or static QDQ calibrated on the
kind's calibration samples, never its evaluation data. ``reduce_range`` and the weight
type come from the pool's hardware preset (``tasks/pools.py``), which is part of the key:
another CPU family re-quantizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks import chains
from tasks.core.project import Project
from tasks.core.skip import skippable
from tasks.core.stage import Stage
from tasks.pools import local_pool, resolve_preset


def _preset(project: Project, model: str) -> dict[str, Any]:
    return {"preset": resolve_preset(local_pool(project))}


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    steps = [("int8", chains.config(project, model, "quantize"))]
    done, _ = chains.apply(project, model, steps, out / "model.onnx", torch_model=None, **_preset(project, model))
    return {k: v for k, v in done[0].items() if k not in ("step", "onnx_bytes")}


STAGE = Stage(
    name="quantize",
    body=skippable(_body, "quantize"),
    inputs=lambda p, m: {"onnx": p.artifact(m, "baseline"), **p.kind(m).data_inputs(p, m)},
    params=lambda p, m: ["seed", "threads", "pools", "model.kind", "model.quantize", "model.eval"],
    uses=lambda p, m: ["calibration"],
    code=lambda p, m: chains.step_modules("int8"),
    extra=_preset,
)
