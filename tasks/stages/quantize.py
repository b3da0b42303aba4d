"""Stage ``quantize``: onnxruntime int8 of the fp32 graph, for this machine's pool.

Dynamic (weights int8, activations quantized at run time) or static QDQ calibrated on the
kind's calibration samples, never its evaluation data. ``reduce_range`` and the weight
type come from the pool's hardware preset (``tasks/pools.py``), which is part of the key:
another CPU family re-quantizes. The int8 step keeps nodes whose int32 bias would saturate
in float and checks the graph's outputs against float before it counts as built
(``quantize/presets.py``).

With ``accuracy_control: N``, an int8 artifact that misses the entry's tolerance has up to N
of its most sensitive nodes (measured on calibration samples) put back in float, one at a
time, until it passes; otherwise the nearest miss stays, with its shortfall. The pass check
uses the kind's evaluator on its selection split (the validation split carved from the
training data, where the kind has one), as NNCF's accuracy control uses its validation set:
the test split only reports.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

from model_compression.quantize.fallback import sensitivity, weighted_nodes
from model_compression.quantize.onnx_int8 import OnnxInt8Config
from model_compression.quantize.presets import apply_preset
from tasks import chains
from tasks.core.project import Project
from tasks.core.skip import skippable
from tasks.core.stage import Stage
from tasks.evaluation import evaluate_artifacts
from tasks.gates.regression import bootstrap
from tasks.gates.tolerance import judge, tolerance
from tasks.pools import int8_target, kernel_watch

log = logging.getLogger("pipeline")


def _preset(project: Project, model: str) -> dict[str, Any]:
    return int8_target(project)


def _int8(project: Project, model: str, cfg: OnnxInt8Config, dst: Path) -> dict[str, Any]:
    done, _ = chains.apply(project, model, [("int8", cfg)], dst, torch_model=None,
                           preset=_preset(project, model)["preset"])  # fmt: skip
    return {k: v for k, v in done[0].items() if k not in ("step", "onnx_bytes")}


def _judged(project: Project, model: str, path: Path) -> dict[str, Any]:
    """The int8 file's row against fp32 on the kind's selection split: which nodes stay in
    float is a choice, so it is never made on the test split."""
    files = {"baseline": project.artifact(model, "baseline"), "quantize": path}
    split = project.kind(model).selection_split(project, model)
    rows = evaluate_artifacts(project, model, files, bootstrap(project), split)
    rows[1]["split"] = split
    judge(rows, tolerance(project, model))
    return rows[1]


def _accuracy_control(project: Project, model: str, cfg: OnnxInt8Config, dst: Path) -> dict[str, Any]:
    """Put the most sensitive nodes back in float, one at a time, until the artifact passes."""
    row = _judged(project, model, dst)
    if row["passed"]:
        return {"passed": True, "kept_in_float": [], "evaluations": 1}
    base = project.artifact(model, "baseline")
    full = apply_preset(cfg, _preset(project, model)["preset"])
    feeds = project.kind(model).calibration(project, model)
    ranked = list(sensitivity(base, full, feeds, weighted_nodes(base, cfg.op_types)))
    best = {"shortfall": row["shortfall"], "reasons": row["reasons"], "kept_in_float": []}
    kept: list[str] = []
    for node in ranked[: cfg.accuracy_control]:
        kept.append(node)
        trial = dst.with_name(f"trial-{len(kept)}.onnx")
        _int8(project, model, dataclasses.replace(cfg, exclude_nodes=cfg.exclude_nodes + tuple(kept)), trial)
        row = _judged(project, model, trial)
        log.info("%s/quantize: %d node(s) in float, shortfall %.4f", model, len(kept), row["shortfall"])
        if row["shortfall"] <= best["shortfall"]:
            shutil.move(str(trial), dst)
            best = {"shortfall": row["shortfall"], "reasons": row["reasons"], "kept_in_float": list(kept)}
        trial.unlink(missing_ok=True)
        if row["passed"]:
            return {"passed": True, "kept_in_float": list(kept), "evaluations": len(kept) + 1}
    log.warning("%s/quantize: no artifact passed with up to %d node(s) in float; nearest miss: %s", model,
                len(kept), "; ".join(best["reasons"]))  # fmt: skip
    return {"passed": False, "evaluations": len(kept) + 1, "nearest_miss": best, "ranked": ranked}


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    cfg = chains.config(project, model, "quantize")
    info = _int8(project, model, cfg, out / "model.onnx")
    if cfg.accuracy_control:
        info["accuracy_control"] = _accuracy_control(project, model, cfg, out / "model.onnx")
    return info


def _controlled(project: Project, model: str) -> bool:
    return bool((project.section(model, "quantize") or {}).get("accuracy_control"))


STAGE = Stage(
    name="quantize",
    body=skippable(_body, "quantize"),
    inputs=lambda p, m: {"onnx": p.artifact(m, "baseline"), **p.kind(m).data_inputs(p, m)},
    params=lambda p, m: [
        "seed",
        "threads",
        "pools",
        "model.kind",
        "model.quantize",
        "model.eval",
        *(["model.tolerance", "regression"] if _controlled(p, m) else []),
    ],
    uses=lambda p, m: ["calibration", *(["evaluate"] if _controlled(p, m) else [])],
    code=lambda p, m: chains.step_modules("int8"),
    extra=_preset,
    watches=kernel_watch,
)
