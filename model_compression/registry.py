"""The registry: every technique and recipe step the pipeline knows, in one visible place.

Entries are ``"module:attr"`` strings, imported only when used: code that asks for one
technique loads that technique and no other, so a stage's code set (``tasks/core/codehash``)
holds what the stage runs. Each handler is defined beside its config, in the technique's
own module. Anything not listed here is rejected with an error that lists what is.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from model_compression.config import from_dict, load

# A stage's technique section in a catalogue entry -> its config class.
TECHNIQUES: dict[str, str] = {
    "score": "model_compression.score.weights:ScoreConfig",
    "prune": "model_compression.prune.magnitude:MagnitudePruneConfig",
    "quantize": "model_compression.quantize.onnx_int8:OnnxInt8Config",
    "factorize": "model_compression.factorize.svd:SVDConfig",
}


@dataclass(frozen=True)
class Step:
    """One recipe step.

    Attributes:
        config: its config class.
        torch: ``(module, cfg, ctx) -> (module, info)`` on the torch model, or None.
        onnx: ``(src, dst, cfg, ctx) -> info`` on an ONNX file, or None. A step with both
            runs on torch when the model has torch weights, on the graph otherwise.
        needs: what the step asks of the model's kind (``chain.ChainContext``):
            ``calibration`` samples, ``finetune`` training.
        sparse: it adds zeros or shared values, which pay off in the transfer package.
    """

    config: str
    torch: str | None = None
    onnx: str | None = None
    needs: tuple[str, ...] = ()
    sparse: bool = False

    @property
    def runs_on(self) -> str:
        return "torch" if self.torch else "onnx"

    def handler(self, on: str) -> Any:
        ref = self.torch if on == "torch" else self.onnx
        if ref is None:
            raise ValueError(f"step has no {on} form")
        return load(ref)

    def modules(self) -> list[str]:
        """The modules this step runs (for the code set of a stage that uses it)."""
        return sorted({ref.partition(":")[0] for ref in (self.config, self.torch, self.onnx) if ref})


_P, _Q, _D = "model_compression.prune", "model_compression.quantize", "model_compression.distill"
_F = "model_compression.fuse.transformer"
STEPS: dict[str, Step] = {
    "prune_channels": Step(f"{_P}.structured:ChannelPruneConfig", torch=f"{_P}.structured:channels_step"),
    "prune_transformer": Step(f"{_P}.structured:TransformerPruneConfig", torch=f"{_P}.structured:transformer_step"),
    "layer_drop": Step(f"{_P}.structured:LayerDropConfig", torch=f"{_P}.structured:layer_drop_step"),
    "prune": Step(
        f"{_P}.magnitude:MagnitudePruneConfig",
        torch=f"{_P}.magnitude:recipe_step",
        onnx=f"{_P}.onnx_magnitude:recipe_step",
        sparse=True,
    ),
    # per-layer sparsity / bits from measured sensitivity on calibration probes
    "prune_sensitive": Step(
        f"{_P}.sensitive:SensitivePruneConfig",
        torch=f"{_P}.sensitive:recipe_step",
        onnx=f"{_P}.onnx_sensitive:recipe_step",
        needs=("calibration",),
        sparse=True,
    ),
    "factorize": Step(
        "model_compression.factorize.svd:SVDConfig",
        torch="model_compression.factorize.svd:recipe_step",
        onnx="model_compression.factorize.onnx_svd:recipe_step",
    ),
    "finetune": Step(f"{_D}.finetune:FinetuneConfig", torch=f"{_D}.finetune:recipe_step", needs=("finetune",)),
    "kmeans": Step(f"{_Q}.kmeans:KMeansConfig", torch=f"{_Q}.kmeans:recipe_step", sparse=True),
    "kmeans_sensitive": Step(
        f"{_Q}.kmeans:SensitiveKMeansConfig", torch=f"{_Q}.kmeans:sensitive_step", needs=("calibration",), sparse=True
    ),
    "int8": Step(f"{_Q}.onnx_int8:OnnxInt8Config", onnx=f"{_Q}.presets:recipe_step", needs=("calibration",)),
    "int4": Step(f"{_Q}.onnx_int4:Int4Config", onnx=f"{_Q}.onnx_int4:recipe_step"),
    "codebook": Step(f"{_Q}.onnx_codebook:CodebookGraphConfig", onnx=f"{_Q}.onnx_codebook:recipe_step"),
    "fuse": Step(
        "model_compression.fuse.transformer:TransformerFusionConfig",
        onnx="model_compression.fuse.transformer:recipe_step",
    ),
    # embedding tables at 1-4 bits, decoded in the graph with standard ops
    "embed_lowbit": Step(
        f"{_Q}.embedding_lowbit:EmbeddingLowBitConfig", onnx=f"{_Q}.onnx_embedding:recipe_step", needs=("token_counts",)
    ),
}


def technique_config(technique: str, values: dict[str, Any] | None, where: str = "") -> Any:
    """The validated config of a stage's ``technique`` from its params section."""
    if technique not in TECHNIQUES:
        raise ValueError(f"unknown technique {technique!r}; known techniques: {sorted(TECHNIQUES)}")
    return from_dict(load(TECHNIQUES[technique]), values or {}, where or technique)


def recipe_steps(name: str, steps: Any, supported: Collection[str], kind: str = "") -> list[tuple[str, Any]]:
    """The validated ``(step, config)`` chain of recipe ``name``, from its params.yaml list
    of ``{step: <name>, <field>: <value>, ...}`` mappings, for a model kind that supports
    the steps in ``supported``."""
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
        if step not in STEPS:
            raise ValueError(f"{where}[{i}]: unknown step {step!r}; known steps: {sorted(STEPS)}")
        if step not in supported:
            raise ValueError(
                f"{where}[{i}]: step {step!r} does not apply to kind {kind!r} (it supports {sorted(supported)})"
            )
        spec = STEPS[step]
        if spec.runs_on == "torch" and seen_onnx:
            raise ValueError(f"{where}[{i}]: torch step {step!r} after an ONNX step; put int8/int4 last")
        seen_onnx = seen_onnx or spec.runs_on == "onnx"
        chain.append((step, from_dict(load(spec.config), values, f"{where}[{i}].{step}")))
    return chain
