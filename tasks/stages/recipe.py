"""Stage ``recipe``: the model entry's named recipe (params.yaml ``recipes:``), a chain of
techniques applied in order to one model, e.g. for the CNN
prune channels -> fine-tune -> prune -> fine-tune -> k-means; for MiniLM int4 embeddings ->
int8 MatMuls. Torch steps edit a copy of the fp32 model (fine-tuning distils from the
fp32 teacher and keeps pruned weights at zero); the model is exported once, and ONNX steps
rewrite the graph (``model_compression/chain.py``). Writes ``model.onnx`` and
``steps.json`` (what each step did).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from model_compression.errors import NotApplicable
from model_compression.layers import n_params
from model_compression.registry import STEPS, recipe_steps
from tasks import chains
from tasks.core.project import Project
from tasks.core.skip import skippable
from tasks.core.stage import Stage, write_json
from tasks.pools import int8_target, kernel_watch, local_pool, resolve_preset

log = logging.getLogger("pipeline")


def recipe_of(project: Project, model: str) -> tuple[str, list[tuple[str, Any]]]:
    """(name, validated steps) of the recipe ``models.<model>.recipe`` names."""
    name = project.section(model, "recipe")
    recipes = project.params.get("recipes") or {}
    if name not in recipes:
        raise ValueError(f"models.{model}.recipe names {name!r}, which is not in recipes: {sorted(recipes)}")
    kind = project.kind(model)
    return name, recipe_steps(name, recipes[name], kind.recipe_steps, kind.name)


def _step_names(project: Project, model: str) -> list[str]:
    name = project.section(model, "recipe")
    steps = (project.params.get("recipes") or {}).get(name) or [] if name else []
    return [s["step"] for s in steps if isinstance(s, dict) and s.get("step") in STEPS]


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    name, steps = recipe_of(project, model)
    teacher = project.kind(model).load(project, model)
    if teacher is None:
        raise NotApplicable("recipes need the torch model (an ONNX-only model has none)")
    preset = resolve_preset(local_pool(project))
    done, net = chains.apply(project, model, steps, out / "model.onnx", torch_model=teacher, teacher=teacher,
                             preset=preset)  # fmt: skip
    for info in done:
        brief = {k: v for k, v in info.items() if not isinstance(v, dict)}  # per-layer tables: steps.json
        log.info("%s/recipe %s: %s", model, name, brief)
    write_json(out / "steps.json", done)
    assert net is not None
    return {"recipe": name, "steps": [d["step"] for d in done], "parameters": n_params(net),
            "onnx_bytes": os.path.getsize(out / "model.onnx"),
            "storage_only": any(STEPS[d["step"]].sparse for d in done)}  # fmt: skip


def _uses(project: Project, model: str) -> list[str]:
    needs = {need for step in _step_names(project, model) for need in STEPS[step].needs}
    return ["load", "export", *sorted(needs)]


def _params(project: Project, model: str) -> list[str]:
    name = project.section(model, "recipe")
    return [
        "seed",
        "threads",
        "pools",
        "model.kind",
        "model.recipe",
        "model.eval",
        *([f"recipes.{name}"] if name else []),
    ]


def _inputs(p: Project, m: str) -> dict[str, Path]:
    return {"baseline": p.stage_dir(m, "baseline"), **p.kind(m).data_inputs(p, m)}


STAGE = Stage(
    name="recipe",
    body=skippable(_body, "recipe"),
    inputs=_inputs,
    params=_params,
    uses=_uses,
    code=lambda p, m: chains.step_modules(*_step_names(p, m)),
    extra=lambda p, m: int8_target(p) if p.section(m, "recipe") else {},
    watches=lambda p, m: kernel_watch(p) if p.section(m, "recipe") else [],
)
