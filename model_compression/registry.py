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
from model_compression.distill.logits import LogitDistillConfig, StudentDistillConfig
from model_compression.factorize.svd import SVDConfig
from model_compression.kinds import custom, image_classifier, text_encoder
from model_compression.models.fashion_cnn import CNNConfig, TrainConfig
from model_compression.prune.magnitude import MagnitudePruneConfig
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
