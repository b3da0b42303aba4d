"""Stage ``recipe``: the model entry's named recipes (params.yaml ``recipes:``), each a chain
of techniques applied in order to one model, e.g. for the CNN
prune channels -> fine-tune -> prune -> fine-tune -> k-means; for MiniLM int4 embeddings ->
int8 MatMuls. Each recipe's artifact is called by the recipe's name and goes through
package, validate, benchmark and publish like the others.

A recipe is a list of steps (it starts from the fp32 model), or a mapping:
``steps`` (the list), ``from`` (``baseline``, default, or ``distill``: the student's ONNX
graph, for ONNX steps only) and ``tolerance`` (its own, instead of the entry's: a recipe
that re-embeds is held to task quality, a drop-in one to cosine with fp32).

Torch steps edit a copy of the fp32 model (fine-tuning distils from the fp32 teacher and
keeps pruned weights at zero); the model is exported once, and ONNX steps rewrite the
graph (``model_compression/chain.py``). Writes ``<recipe>/model.onnx`` and
``<recipe>/steps.json`` (what each step did).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_compression.errors import NotApplicable
from model_compression.layers import n_params
from model_compression.registry import STEPS, recipe_steps
from tasks import chains
from tasks.core.project import Project
from tasks.core.skip import skippable
from tasks.core.stage import Stage, write_json
from tasks.pools import int8_target, kernel_watch, local_pool, resolve_preset

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger("pipeline")
STARTS = ("baseline", "distill")  # the artifacts a recipe may start from


@dataclass(frozen=True)
class Recipe:
    """One named recipe: its validated steps, the artifact it starts from."""

    name: str
    steps: list[tuple[str, Any]]
    start: str = "baseline"


def recipes_of(project: Project, model: str) -> list[Recipe]:
    """The validated recipes ``models.<model>.recipe`` names, in order."""
    kind = project.kind(model)
    out = []
    for name in project.recipe_names(model):
        raw = project.recipe_spec(model, name)
        start = raw.get("from", "baseline")
        if start not in STARTS:
            raise ValueError(f"recipes.{name}.from must be one of {list(STARTS)}, got {start!r}")
        steps = recipe_steps(name, raw["steps"], kind.recipe_steps, kind.name)
        torch_steps = [s for s, _ in steps if STEPS[s].runs_on == "torch"]
        if start != "baseline" and torch_steps:
            raise ValueError(f"recipes.{name} starts from {start}'s ONNX graph: torch steps {torch_steps} cannot run")
        out.append(Recipe(name, steps, start))
    return out


def _step_names(project: Project, model: str) -> list[str]:
    steps = [s for n in project.recipe_names(model) for s in project.recipe_spec(model, n)["steps"] or []]
    return [s["step"] for s in steps if isinstance(s, dict) and s.get("step") in STEPS]


def _run(project: Project, model: str, recipe: Recipe, out: Path, teacher: nn.Module, preset: str) -> dict[str, Any]:
    """Apply one recipe into ``out`` (``model.onnx``, ``steps.json``); its summary."""
    start = None if recipe.start == "baseline" else project.artifact(model, recipe.start)
    net = teacher if start is None else None  # from another artifact: its ONNX graph
    done, net = chains.apply(project, model, recipe.steps, out / "model.onnx", torch_model=net, onnx=start,
                             teacher=teacher, preset=preset)  # fmt: skip
    for info in done:
        brief = {k: v for k, v in info.items() if not isinstance(v, dict)}  # per-layer tables: steps.json
        log.info("%s/recipe %s: %s", model, recipe.name, brief)
    write_json(out / "steps.json", done)
    return {"from": recipe.start, "steps": [d["step"] for d in done], "parameters": n_params(net) if net else None,
            "onnx_bytes": os.path.getsize(out / "model.onnx"),
            "storage_only": any(STEPS[d["step"]].sparse for d in done)}  # fmt: skip


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    teacher = project.kind(model).load(project, model)  # once, for every recipe
    if teacher is None:
        raise NotApplicable("recipes need the torch model (an ONNX-only model has none)")
    preset = resolve_preset(local_pool(project))
    done, skipped = {}, {}
    for recipe in recipes_of(project, model):
        if recipe.start != "baseline" and not project.artifact(model, recipe.start).is_file():
            skipped[recipe.name] = f"starts from {recipe.start}, which made no artifact for {model}"
            log.info("%s/recipe %s skipped: %s", model, recipe.name, skipped[recipe.name])
            continue
        (out / recipe.name).mkdir()
        done[recipe.name] = _run(project, model, recipe, out / recipe.name, teacher, preset)
    return {"recipes": done, "recipes_skipped": skipped}


def _uses(project: Project, model: str) -> list[str]:
    needs = {need for step in _step_names(project, model) for need in STEPS[step].needs}
    return ["load", "export", *sorted(needs)]


def _params(project: Project, model: str) -> list[str]:
    recipes = (f"recipes.{n}" for n in project.recipe_names(model))
    return ["seed", "threads", "pools", "model.kind", "model.recipe", "model.eval", *recipes]


def _inputs(p: Project, m: str) -> dict[str, Path]:
    starts = {p.recipe_spec(m, n).get("from", "baseline") for n in p.recipe_names(m)} - {"baseline"}
    return {"baseline": p.stage_dir(m, "baseline"), **{s: p.stage_dir(m, s) for s in sorted(starts)},
            **p.kind(m).data_inputs(p, m)}  # fmt: skip


STAGE = Stage(
    name="recipe",
    body=skippable(_body, "recipe"),
    inputs=_inputs,
    params=_params,
    uses=_uses,
    pinned=lambda p, m: bool(p.recipe_names(m)),  # recipes fine-tune
    code=lambda p, m: chains.step_modules(*_step_names(p, m)),
    extra=lambda p, m: int8_target(p) if p.section(m, "recipe") else {},
    watches=lambda p, m: kernel_watch(p) if p.section(m, "recipe") else [],
)
