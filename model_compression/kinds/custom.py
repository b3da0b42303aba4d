"""Kind ``custom``: a team's own model (ONNX, safetensors + factory, TorchScript, ``.pt2``).

Which techniques apply depends on the format (``skip_reason``); the rest are skipped
with the reason. Quality is scored for the entry's task (``model_compression.byo.evaluate``).
"""

from __future__ import annotations

from model_compression.byo.data import Examples, preprocess, read_pairs, read_raw, split, synthetic
from model_compression.byo.evaluate import quality_metrics, run_tensor, run_text, score
from model_compression.byo.load import (
    TorchModel,
    build_from_factory,
    check_onnx_inputs,
    check_torch_inputs,
    export,
    load_torch,
    onnx_inputs,
)
from model_compression.byo.spec import EvalSpec, InputSpec, ModelSpec, format_of

__all__ = [
    "EvalSpec",
    "Examples",
    "InputSpec",
    "ModelSpec",
    "TorchModel",
    "build_from_factory",
    "check_onnx_inputs",
    "check_torch_inputs",
    "export",
    "format_of",
    "load_torch",
    "onnx_inputs",
    "preprocess",
    "quality_metrics",
    "read_pairs",
    "read_raw",
    "run_tensor",
    "run_text",
    "score",
    "skip_reason",
    "split",
    "synthetic",
]

_NO_STUDENT = "distillation needs a student architecture: give safetensors weights with arch.factory"


def skip_reason(technique: str, fmt: str, task: str) -> str | None:
    """Why ``technique`` cannot apply to a ``fmt`` model evaluated on ``task``, or None.

    ONNX files, TorchScript and ``.pt2`` programs are pruned and factorized on the ONNX
    graph (initializers; MatMul/Gemm split in two), so only distillation needs a factory.
    Recipes (named chains of steps) are for the catalogue kinds.
    """
    if technique == "recipe":
        return "recipes run on the catalogue kinds (text-encoder, image-classifier); a custom model uses the stages"
    if technique != "distill":
        return None
    if fmt == "onnx":
        return f"{_NO_STUDENT}; an ONNX file cannot be fine-tuned"
    if fmt == "torchscript":
        return f"{_NO_STUDENT}; a TorchScript archive fixes its own architecture"
    if fmt == "pt2":
        return f"{_NO_STUDENT}; a torch.export program cannot be put in training mode"
    if task == "text-embedding":
        return "distillation of custom text encoders is not built yet (hidden-state KD needs the encoder's layers)"
    return None
