"""Stage ``baseline``: the fp32 reference of a model, as torch weights and ``model.onnx``.

A ``text-encoder`` is copied from the fetched folder and exported; an ``image-classifier``
is trained here, deterministically, on the fetched dataset (the training stage: cached,
so a nightly run retrains only when code, params or data change).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from model_compression.kinds import image_classifier, text_encoder
from model_compression.registry import SETTINGS, from_dict
from tasks import custom
from tasks.project import Project
from tasks.stage import Stage


def _params(project: Project, model: str) -> dict[str, Any]:
    e = project.entry(model)
    return {
        "kind": e["kind"],
        "arch": e.get("arch"),
        "train": e.get("train"),
        "seed": project.seed,
        "threads": project.threads,
        # a custom model's evaluation/calibration split is made here
        **({"eval": e.get("eval")} if e["kind"] == "custom" else {}),
    }


def _inputs(project: Project, model: str) -> dict[str, Path]:
    inputs = {"fetch": project.stage_dir(model, "fetch")}
    factory = custom.factory_file(project, model) if project.kind(model) == "custom" else None
    if factory is not None:  # the team's model code: a change rebuilds the baseline
        inputs["factory"] = factory
    return inputs


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    src = project.stage_dir(model, "fetch")
    kind = project.kind(model)
    if kind == "custom":
        return custom.baseline(project, model, out)
    if kind == "text-encoder":
        m = text_encoder.build_baseline(src, out)
        return {"parameters": n_params(m), "onnx_bytes": os.path.getsize(out / "model.onnx")}
    e = project.entry(model)
    arch = from_dict(SETTINGS["cnn-arch"], e.get("arch") or {}, f"{model}.arch")
    train = from_dict(SETTINGS["cnn-train"], {"seed": project.seed, **(e.get("train") or {})}, f"{model}.train")
    cnn, losses = image_classifier.build_baseline(src, out, arch, train)
    return {"parameters": n_params(cnn), "train_loss": losses, "onnx_bytes": os.path.getsize(out / "model.onnx")}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


BASELINE = Stage(
    name="baseline",
    version=1,
    inputs=_inputs,
    params=_params,
    body=_body,
)


def load_fp32(project: Project, model: str) -> nn.Module | None:
    """The fp32 torch model from the baseline folder; None for a custom model whose
    techniques work on its ONNX graph (ONNX, TorchScript and .pt2 sources)."""
    folder = project.stage_dir(model, "baseline")
    if project.kind(model) == "custom":
        return custom.load_fp32(project, model)
    if project.kind(model) == "text-encoder":
        return text_encoder.load(folder)[0]
    return image_classifier.load(folder)


def export(project: Project, model: str, module: nn.Module, path: Path) -> None:
    """Export a (compressed) torch model of ``model``'s kind to ONNX at ``path``."""
    if project.kind(model) == "custom":
        custom.export(project, model, module, path)
    elif project.kind(model) == "text-encoder":
        _, tok = text_encoder.load(project.stage_dir(model, "baseline"))
        text_encoder.export(module, tok, path)
    else:
        image_classifier.export(module, path)


def baseline(model: str, root: str = ".") -> dict[str, Any]:
    """Build the fp32 reference of ``model`` into ``data/<model>/baseline``."""
    return BASELINE.run(model, root)
