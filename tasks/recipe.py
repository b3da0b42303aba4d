"""Stage ``recipe``: the model entry's named recipe (params.yaml ``recipes:``), a chain of
techniques applied in order to one model, e.g. for the CNN
prune channels -> fine-tune -> prune -> fine-tune -> k-means; for MiniLM int4 embeddings ->
int8 MatMuls. Torch steps edit a copy of the fp32 model (fine-tuning distils from the
fp32 teacher and keeps pruned weights at zero); the model is exported once, and ONNX steps
rewrite the graph. Writes ``model.onnx`` and ``steps.json`` (what each step did).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from model_compression.distill.finetune import finetune_classifier, finetune_encoder
from model_compression.errors import NotApplicable
from model_compression.factorize.svd import factorize as svd_factorize
from model_compression.kinds import image_classifier, text_encoder
from model_compression.prune.magnitude import prune as magnitude_prune
from model_compression.prune.magnitude import sparsity as achieved_sparsity
from model_compression.prune.sensitive import prune as sensitive_prune
from model_compression.prune.structured import drop_layers, prune_channels, prune_transformer
from model_compression.quantize.kmeans import distinct_values, share, share_sensitive
from model_compression.quantize.onnx_int4 import count_int4_nodes
from model_compression.quantize.onnx_int4 import quantize as int4_quantize
from model_compression.registry import RECIPE_STEPS, recipe_steps
from tasks.baseline import export, load_fp32, n_params
from tasks.compress import eval_config, quantize_to, skippable
from tasks.pools import local_pool, resolve_preset
from tasks.project import Project
from tasks.search import probe
from tasks.stage import Stage, write_json

log = logging.getLogger("pipeline")
# steps that add zeros or shared values: the artifact is storage-only unless it is also faster
SPARSE_STEPS = frozenset({"prune", "prune_sensitive", "kmeans", "kmeans_sensitive"})
PROBE_SAMPLES = 32  # calibration samples the sensitivity steps measure distortion on


def recipe_of(project: Project, model: str) -> tuple[str, list[tuple[str, Any]]]:
    """(name, validated steps) of the recipe ``models.<model>.recipe`` names."""
    name = project.entry(model).get("recipe")
    recipes = project.params.get("recipes") or {}
    if name not in recipes:
        raise ValueError(f"models.{model}.recipe names {name!r}, which is not in recipes: {sorted(recipes)}")
    return name, recipe_steps(name, recipes[name], project.kind(model))


def _torch_step(project: Project, model: str, step: str, cfg: Any, net: Any, teacher: Any) -> tuple[Any, dict]:
    """Apply one torch step to ``net``; returns (net, what it did)."""
    if step == "prune_channels":
        net, shapes = prune_channels(net, cfg)
        return net, {"units": shapes, "parameters": n_params(net)}
    if step == "prune_transformer":
        net, kept = prune_transformer(net, cfg)
        return net, {"kept_heads_neurons": kept, "parameters": n_params(net)}
    if step == "layer_drop":
        net = drop_layers(net, cfg)
        return net, {"layers": list(cfg.keep), "parameters": n_params(net)}
    if step == "prune":
        net = magnitude_prune(net, cfg)
        return net, {"sparsity": achieved_sparsity(net, cfg)}
    if step == "prune_sensitive":
        net, chosen = sensitive_prune(net, cfg, probe(project, model, PROBE_SAMPLES)[1])
        return net, {"sparsity_by_layer": chosen}
    if step == "kmeans_sensitive":
        net, bits = share_sensitive(net, cfg, probe(project, model, PROBE_SAMPLES)[1])
        return net, {"bits_by_layer": bits}
    if step == "factorize":
        net, ranks = svd_factorize(net, cfg)
        return net, {"ranks": ranks, "parameters": n_params(net)}
    if step == "kmeans":
        net = share(net, cfg)
        return net, {"max_distinct_values": max(distinct_values(net, cfg).values())}
    if step == "finetune":
        if project.kind(model) == "text-encoder":
            _, tok = text_encoder.load(project.stage_dir(model, "baseline"))
            sentences = text_encoder.train_sentences(eval_config(project, model))
            losses = finetune_encoder(net, teacher, tok, sentences, cfg, project.seed)
        else:
            x, y = image_classifier.train_data(project.stage_dir(model, "fetch"))
            losses = finetune_classifier(net, teacher, x, y, cfg, project.seed)
        return net, {"loss_first": losses[0], "loss_last": losses[-1]}
    raise ValueError(f"not a torch step: {step!r}")


def _onnx_step(project: Project, model: str, step: str, cfg: Any, src: Path, dst: Path) -> dict[str, Any]:
    if step == "int8":
        return quantize_to(project, model, resolve_preset(local_pool(project)), dst, src, cfg)
    int4_quantize(src, dst, cfg)
    return {"int4_nodes": count_int4_nodes(dst)}


def _recipe(project: Project, model: str, out: Path) -> dict[str, Any]:
    name, steps = recipe_of(project, model)
    teacher = load_fp32(project, model)
    if teacher is None:
        raise NotApplicable("recipes need the torch model (an ONNX-only model has none)")
    net = copy.deepcopy(teacher)
    done: list[dict[str, Any]] = []
    torch_steps = [(s, c) for s, c in steps if RECIPE_STEPS[s][2] == "torch"]
    onnx_steps = [(s, c) for s, c in steps if RECIPE_STEPS[s][2] == "onnx"]
    for step, cfg in torch_steps:
        net, info = _torch_step(project, model, step, cfg, net, teacher)
        brief = {k: v for k, v in info.items() if not isinstance(v, dict)}  # per-layer tables: steps.json
        log.info("%s/recipe %s: %s %s", model, name, step, brief)
        done.append({"step": step, **info})
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        current = Path(tmp) / "step0.onnx"
        export(project, model, net, current)
        for i, (step, cfg) in enumerate(onnx_steps, 1):
            nxt = Path(tmp) / f"step{i}.onnx"
            info = _onnx_step(project, model, step, cfg, current, nxt)
            done.append({"step": step, **info, "onnx_bytes": os.path.getsize(nxt)})
            current = nxt
        shutil.move(str(current), out / "model.onnx")
    write_json(out / "steps.json", done)
    return {"recipe": name, "steps": [d["step"] for d in done], "parameters": n_params(net),
            "onnx_bytes": os.path.getsize(out / "model.onnx"),
            "storage_only": any(d["step"] in SPARSE_STEPS for d in done)}  # fmt: skip


def _inputs(p: Project, m: str) -> dict[str, Path]:
    inputs = {"baseline": p.stage_dir(m, "baseline")}
    if p.kind(m) != "text-encoder":
        inputs["data"] = p.stage_dir(m, "fetch")  # fine-tuning and calibration images
    return inputs


def _params(p: Project, m: str) -> dict[str, Any]:
    e = p.entry(m)
    name = e.get("recipe")
    out = {"recipe": name, "kind": e["kind"], "seed": p.seed, "threads": p.threads, "eval": e.get("eval")}
    if name is not None:
        out["steps"] = (p.params.get("recipes") or {}).get(name)
        out["preset"] = resolve_preset(local_pool(p))
    return out


RECIPE = Stage("recipe", 1, _inputs, _params, skippable(_recipe, "recipe"))


def recipe(model: str, root: str = ".") -> dict[str, Any]:
    """Run ``model``'s named recipe (params.yaml) and write its artifact."""
    return RECIPE.run(model, root)
