"""Stages ``score``, ``prune``, ``quantize``, ``factorize`` and ``distill``.

Each reads the fp32 baseline, applies one library technique with its config from
params.yaml, and writes ``model.onnx`` (score writes ``score.json``) plus its record.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any

from model_compression.distill import embedding as emb_distill
from model_compression.distill import logits as logit_distill
from model_compression.errors import NotApplicable
from model_compression.factorize.onnx_svd import factorize_onnx
from model_compression.factorize.svd import factorize as svd_factorize
from model_compression.info.entropy import entropy_bound
from model_compression.info.onnx_weights import onnx_layer_stats
from model_compression.kinds import image_classifier, text_encoder
from model_compression.prune.magnitude import prune as magnitude_prune
from model_compression.prune.magnitude import sparsity as achieved_sparsity
from model_compression.prune.onnx_magnitude import prune_onnx
from model_compression.quantize.onnx_int8 import OnnxInt8Config, count_quantized_nodes
from model_compression.quantize.onnx_int8 import quantize as ort_quantize
from model_compression.quantize.presets import apply_preset
from model_compression.registry import SETTINGS, from_dict
from model_compression.score.structure import structure_scores
from model_compression.score.weights import score as score_weights
from tasks import custom
from tasks.baseline import export, load_fp32, n_params
from tasks.pools import local_pool, resolve_preset
from tasks.project import Project
from tasks.stage import Stage, write_json

log = logging.getLogger("pipeline")


def _baseline_input(p: Project, m: str) -> dict[str, Path]:
    return {"baseline": p.stage_dir(m, "baseline")}


def _technique_params(technique: str, extra: tuple[str, ...] = ()) -> Any:
    def params(p: Project, m: str) -> dict[str, Any]:
        e = p.entry(m)
        out = {technique: e.get(technique), "kind": e["kind"], "seed": p.seed, "threads": p.threads}
        out.update({k: e.get(k) for k in extra})
        return out

    return params


def eval_config(project: Project, model: str) -> Any:
    return from_dict(SETTINGS["text-eval"], project.entry(model).get("eval") or {}, f"{model}.eval")


def skip_reason(project: Project, model: str, technique: str) -> str | None:
    """Why ``technique`` does not run for ``model`` (its stage then records the reason and
    writes no artifact), or None. A null section in the entry means "not requested"."""
    if project.entry(model).get(technique) is None:
        return f"not requested ({model}.{technique} is null in params.yaml)"
    if project.kind(model) == "custom":
        return custom.skip_reason(project, model, technique)
    return None


def skippable(body: Any, technique: str) -> Any:
    """Wrap a stage body: a technique that cannot apply is skipped with its reason, logged,
    and recorded in the stage's record; it never fails the batch."""

    def run(project: Project, model: str, out: Path) -> dict[str, Any]:
        reason = skip_reason(project, model, technique)
        if reason is not None:
            log.info("%s/%s skipped: %s", model, technique, reason)
            return {"skipped": reason}
        try:
            summary: dict[str, Any] = body(project, model, out)
        except NotApplicable as e:
            log.warning("%s/%s skipped: %s", model, technique, e)
            for leftover in out.iterdir():  # whatever the body wrote before it found out
                leftover.unlink()
            return {"skipped": str(e)}
        return summary

    return run


# --- score -------------------------------------------------------------------------------
def _score(project: Project, model: str, out: Path) -> dict[str, Any]:
    cfg = project.config(model, "score")
    fp32 = load_fp32(project, model)
    if fp32 is None:  # an ONNX-only model: score its initializers
        stats = onnx_layer_stats(project.artifact(model, "baseline"), cfg.bits, cfg.min_numel)
        write_json(out / "score.json", [dataclasses.asdict(t) for t in stats])
        numel = sum(t.numel for t in stats)
        bits = sum(t.numel * t.entropy_bits for t in stats)
        return {
            "layers": len(stats),
            "numel": numel,
            "entropy_bits_per_weight": bits / max(numel, 1),
            "entropy_bound_bytes": math.ceil(bits / 8),
            "raw_bytes_at_bits": numel * cfg.bits // 8,
        }
    rows = score_weights(fp32, cfg)
    write_json(out / "score.json", [r.as_row() for r in rows])
    # per channel / head / FFN neuron: what structured pruning would remove first
    structure = structure_scores(fp32)
    write_json(out / "structure.json", structure)
    bound = entropy_bound([p.detach() for n, p in fp32.named_parameters() if n in {r.name for r in rows}], cfg.bits)
    return {
        "layers": len(rows),
        "numel": bound.numel,
        "entropy_bits_per_weight": bound.entropy_bits / max(bound.numel, 1),
        "entropy_bound_bytes": bound.entropy_bytes,
        "raw_bytes_at_bits": bound.raw_bits // 8,
        "structure_groups": len(structure),
    }


SCORE = Stage("score", 2, _baseline_input, _technique_params("score"), skippable(_score, "score"))


# --- prune -------------------------------------------------------------------------------
def _prune(project: Project, model: str, out: Path) -> dict[str, Any]:
    cfg = project.config(model, "prune")
    fp32 = load_fp32(project, model)
    if fp32 is None:  # prune the ONNX graph's weights
        done = prune_onnx(project.artifact(model, "baseline"), out / "model.onnx", cfg)
        return {**done, "on": "onnx graph", "storage_only": True}
    pruned = magnitude_prune(fp32, cfg)
    export(project, model, pruned, out / "model.onnx")
    return {"sparsity": achieved_sparsity(pruned, cfg), "parameters": n_params(pruned), "storage_only": True}


PRUNE = Stage("prune", 1, _baseline_input, _technique_params("prune"), skippable(_prune, "prune"))


# --- quantize ----------------------------------------------------------------------------
def calibration_feeds(project: Project, model: str) -> list[dict[str, Any]]:
    """Calibration batches of ``model`` (never its evaluation data): ONNX feed dicts."""
    if project.kind(model) == "custom":
        return custom.calibration_feeds(project, model)
    if project.kind(model) == "text-encoder":
        return text_encoder.calibration_feeds(project.stage_dir(model, "baseline"), eval_config(project, model))
    n = int((project.entry(model).get("eval") or {}).get("calibration", 256))
    return image_classifier.calibration_feeds(project.stage_dir(model, "fetch"), n)


def quantize_to(
    project: Project, model: str, preset: str, dst: Path, src: Path | None = None, cfg: OnnxInt8Config | None = None
) -> dict[str, Any]:
    """int8 of ``model``'s fp32 ONNX (or of ``src``) for a hardware ``preset``, written to
    ``dst``, with the entry's ``quantize`` section (or ``cfg``, e.g. a recipe step's)."""
    cfg = apply_preset(cfg or project.config(model, "quantize"), preset)
    feeds = calibration_feeds(project, model) if cfg.mode == "static" else None
    ort_quantize(src or project.artifact(model, "baseline"), dst, cfg, feeds)
    return {
        "mode": cfg.mode,
        "preset": preset,
        "reduce_range": cfg.reduce_range,
        "weight_type": cfg.weight_type,
        "quantized_nodes": count_quantized_nodes(dst),
        "calibration_batches": len(feeds or []),
    }


def _quantize(project: Project, model: str, out: Path) -> dict[str, Any]:
    return quantize_to(project, model, resolve_preset(local_pool(project)), out / "model.onnx")


def _quantize_inputs(p: Project, m: str) -> dict[str, Path]:
    inputs = {"onnx": p.artifact(m, "baseline")}
    if p.kind(m) == "image-classifier":
        inputs["data"] = p.stage_dir(m, "fetch")  # calibration images
    if p.kind(m) == "custom":
        inputs["data"] = p.stage_dir(m, "fetch")
        inputs["split"] = p.stage_dir(m, "baseline") / custom.SPLIT
    return inputs


def _quantize_params(p: Project, m: str) -> dict[str, Any]:
    # The resolved preset, not the pools section: a new machine with the same preset keeps
    # the artifact; a different CPU family re-quantizes.
    return {**_technique_params("quantize", ("eval",))(p, m), "preset": resolve_preset(local_pool(p))}


QUANTIZE = Stage("quantize", 2, _quantize_inputs, _quantize_params, skippable(_quantize, "quantize"))


# --- factorize ---------------------------------------------------------------------------
def _factorize(project: Project, model: str, out: Path) -> dict[str, Any]:
    cfg = project.config(model, "factorize")
    fp32 = load_fp32(project, model)
    if fp32 is None:  # split the ONNX graph's MatMul/Gemm weights
        ranks = factorize_onnx(project.artifact(model, "baseline"), out / "model.onnx", cfg)
        return {"ranks": ranks, "layers_factorized": len(ranks), "on": "onnx graph"}
    before = n_params(fp32)
    low, ranks = svd_factorize(fp32, cfg)
    export(project, model, low, out / "model.onnx")
    return {"ranks": ranks, "parameters_before": before, "parameters": n_params(low), "layers_factorized": len(ranks)}


FACTORIZE = Stage("factorize", 1, _baseline_input, _technique_params("factorize"), skippable(_factorize, "factorize"))


# --- distill -----------------------------------------------------------------------------
def _distill(project: Project, model: str, out: Path) -> dict[str, Any]:
    teacher = load_fp32(project, model)
    if project.kind(model) == "custom":
        student, losses = custom.distill(project, model)
    elif project.kind(model) == "text-encoder":
        cfg = project.config(model, "distill")
        cfg = dataclasses.replace(cfg, seed=project.seed)
        _, tok = text_encoder.load(project.stage_dir(model, "baseline"))
        sentences = text_encoder.train_sentences(eval_config(project, model))
        student, losses = emb_distill.distill(teacher, tok, sentences, cfg)  # type: ignore[arg-type]
    else:
        cfg = project.config(model, "distill")
        x, y = image_classifier.train_data(project.stage_dir(model, "fetch"))
        student, losses = logit_distill.distill(teacher, x, y, cfg)
    export(project, model, student, out / "model.onnx")
    return {
        "teacher_parameters": n_params(teacher),
        "parameters": n_params(student),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "onnx_bytes": os.path.getsize(out / "model.onnx"),
    }


def _distill_inputs(p: Project, m: str) -> dict[str, Path]:
    inputs = _baseline_input(p, m)
    if p.kind(m) in ("image-classifier", "custom"):
        inputs["data"] = p.stage_dir(m, "fetch")
    return inputs


DISTILL = Stage("distill", 1, _distill_inputs, _technique_params("distill", ("eval",)), skippable(_distill, "distill"))


def score(model: str, root: str = ".") -> dict[str, Any]:
    """Per-layer magnitude and entropy table of ``model``'s fp32 weights."""
    return SCORE.run(model, root)


def prune(model: str, root: str = ".") -> dict[str, Any]:
    """Magnitude-prune ``model`` at the params' sparsity and export ONNX."""
    return PRUNE.run(model, root)


def quantize(model: str, root: str = ".") -> dict[str, Any]:
    """onnxruntime int8 quantization of ``model``'s fp32 ONNX."""
    return QUANTIZE.run(model, root)


def factorize(model: str, root: str = ".") -> dict[str, Any]:
    """Truncated-SVD factorization of ``model``'s Linear layers, exported to ONNX."""
    return FACTORIZE.run(model, root)


def distill(model: str, root: str = ".") -> dict[str, Any]:
    """Distil a smaller student of ``model`` and export it to ONNX."""
    return DISTILL.run(model, root)
