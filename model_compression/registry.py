"""The registry: every technique and model kind the pipeline knows, in one visible place.

A catalogue entry names its ``kind``; a recipe names techniques. Anything not listed here
is rejected with an error that lists what is.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, TypeVar, get_type_hints

from model_compression.byo.spec import EvalSpec, ModelSpec
from model_compression.distill.embedding import EmbeddingDistillConfig
from model_compression.distill.finetune import FinetuneConfig
from model_compression.distill.logits import LogitDistillConfig, StudentDistillConfig
from model_compression.factorize.svd import SVDConfig
from model_compression.kinds import custom, image_classifier, text_encoder
from model_compression.models.fashion_cnn import CNNConfig, TrainConfig
from model_compression.prune.magnitude import MagnitudePruneConfig
from model_compression.prune.sensitive import SensitivePruneConfig
from model_compression.prune.structured import ChannelPruneConfig, LayerDropConfig, TransformerPruneConfig
from model_compression.quantize.kmeans import KMeansConfig, SensitiveKMeansConfig
from model_compression.quantize.onnx_int4 import Int4Config
from model_compression.quantize.onnx_int8 import OnnxInt8Config
from model_compression.score.weights import ScoreConfig
from model_compression.search.space import SearchConfig

# technique name -> its config class, per model kind (distillation differs by kind)
TECHNIQUES: dict[str, dict[str, type]] = {
    "score": {"text-encoder": ScoreConfig, "image-classifier": ScoreConfig, "custom": ScoreConfig},
    "prune": {
        "text-encoder": MagnitudePruneConfig,
        "image-classifier": MagnitudePruneConfig,
        "custom": MagnitudePruneConfig,
    },
    "quantize": {"text-encoder": OnnxInt8Config, "image-classifier": OnnxInt8Config, "custom": OnnxInt8Config},
    "factorize": {"text-encoder": SVDConfig, "image-classifier": SVDConfig, "custom": SVDConfig},
    "distill": {
        "text-encoder": EmbeddingDistillConfig,
        "image-classifier": LogitDistillConfig,
        "custom": StudentDistillConfig,
    },
}

MODEL_KINDS: dict[str, types.ModuleType] = {
    "text-encoder": text_encoder,
    "image-classifier": image_classifier,
    "custom": custom,  # a team's own model: ONNX, safetensors + factory, TorchScript, .pt2
}

# configs that are not techniques but are read from a catalogue entry
SETTINGS: dict[str, type] = {
    "text-eval": text_encoder.TextEvalConfig,
    "cnn-arch": CNNConfig,
    "cnn-train": TrainConfig,
    "custom-arch": ModelSpec,
    "custom-eval": EvalSpec,
    "search": SearchConfig,
}

# Recipe steps (params.yaml ``recipes:``): step name -> (config class, the kinds it applies
# to, where it runs). Torch steps edit the model before export; ONNX steps rewrite the
# exported graph, so every ONNX step comes after every torch step.
RECIPE_STEPS: dict[str, tuple[type, frozenset[str], str]] = {
    "prune_channels": (ChannelPruneConfig, frozenset({"image-classifier"}), "torch"),
    "prune_transformer": (TransformerPruneConfig, frozenset({"text-encoder"}), "torch"),
    "layer_drop": (LayerDropConfig, frozenset({"text-encoder"}), "torch"),
    "prune": (MagnitudePruneConfig, frozenset({"image-classifier", "text-encoder"}), "torch"),
    # per-layer sparsity / bits from measured sensitivity on calibration probes
    "prune_sensitive": (SensitivePruneConfig, frozenset({"image-classifier", "text-encoder"}), "torch"),
    "factorize": (SVDConfig, frozenset({"image-classifier", "text-encoder"}), "torch"),
    "finetune": (FinetuneConfig, frozenset({"image-classifier", "text-encoder"}), "torch"),
    "kmeans": (KMeansConfig, frozenset({"image-classifier", "text-encoder"}), "torch"),
    "kmeans_sensitive": (SensitiveKMeansConfig, frozenset({"image-classifier", "text-encoder"}), "torch"),
    "int8": (OnnxInt8Config, frozenset({"image-classifier", "text-encoder"}), "onnx"),
    "int4": (Int4Config, frozenset({"image-classifier", "text-encoder"}), "onnx"),
}

T = TypeVar("T")


def kind_module(kind: str) -> types.ModuleType:
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {sorted(MODEL_KINDS)}")
    return MODEL_KINDS[kind]


def technique_config(technique: str, kind: str, values: dict[str, Any] | None) -> Any:
    """Build the validated config of ``technique`` for a model of ``kind`` from params."""
    if technique not in TECHNIQUES:
        raise ValueError(f"unknown technique {technique!r}; known techniques: {sorted(TECHNIQUES)}")
    by_kind = TECHNIQUES[technique]
    if kind not in by_kind:
        raise ValueError(f"technique {technique!r} does not apply to kind {kind!r}")
    return from_dict(by_kind[kind], values or {}, where=technique)


def from_dict(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Construct dataclass ``cls`` from plain YAML values: lists become tuples, nested
    dataclasses are built recursively, and an unknown key is an error naming the field."""
    if not isinstance(values, dict):
        raise ValueError(f"{where or cls.__name__}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where or cls.__name__}: unknown field(s) {unknown}; allowed: {sorted(fields)}")
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            kwargs[name] = from_dict(hint, value, f"{where}.{name}")  # type: ignore[arg-type]
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{where or cls.__name__}: {e}") from e


def recipe_steps(name: str, steps: Any, kind: str) -> list[tuple[str, Any]]:
    """The validated ``(step, config)`` chain of recipe ``name`` for a model of ``kind``,
    from its params.yaml list of ``{step: <name>, <field>: <value>, ...}`` mappings."""
    where = f"recipes.{name}"
    if not isinstance(steps, list) or not steps:
        raise ValueError(f"{where} must be a non-empty list of steps")
    chain: list[tuple[str, Any]] = []
    seen_onnx = False
    for i, raw in enumerate(steps):
        if not isinstance(raw, dict) or "step" not in raw:
            raise ValueError(f"{where}[{i}] must be a mapping with a 'step' key, got {raw!r}")
        values = dict(raw)
        step = values.pop("step")
        if step not in RECIPE_STEPS:
            raise ValueError(f"{where}[{i}]: unknown step {step!r}; known steps: {sorted(RECIPE_STEPS)}")
        cls, kinds, runs_on = RECIPE_STEPS[step]
        if kind not in kinds:
            raise ValueError(f"{where}[{i}]: step {step!r} does not apply to kind {kind!r} (only {sorted(kinds)})")
        if runs_on == "torch" and seen_onnx:
            raise ValueError(f"{where}[{i}]: torch step {step!r} after an ONNX step; put int8/int4 last")
        seen_onnx = seen_onnx or runs_on == "onnx"
        chain.append((step, from_dict(cls, values, f"{where}[{i}].{step}")))
    return chain
