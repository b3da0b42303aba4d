"""Open a custom model by format, check it against its declared inputs, export it to ONNX.

``safetensors`` weights are loaded into the module the entry's factory builds (no pickle);
TorchScript archives with ``torch.jit.load``; ``.pt2`` programs with ``torch.export.load``.
Importing the factory runs the team's own model code: that is the point of a factory, so
only list modules you would import yourself.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from model_compression import onnx_export
from model_compression.byo.spec import InputSpec, ModelSpec
from model_compression.runtime.isolated import declared_inputs

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class TorchModel:
    """A loaded torch model: ``module`` runs it; ``program`` is set for ``.pt2`` programs."""

    module: nn.Module
    format: str
    program: Any = None

    @property
    def trainable(self) -> str | None:
        """None when the model can be fine-tuned, else the reason it cannot."""
        if self.program is not None:
            return "a torch.export program cannot be put in training mode (torch raises on .train())"
        return None


def build_from_factory(spec: ModelSpec, **overrides: Any) -> nn.Module:
    """``factory(**factory_args, **overrides)`` imported from ``package.module:function``."""
    if spec.factory is None:
        raise ValueError("arch.factory is required for safetensors weights ('package.module:function')")
    module_name, _, fn_name = spec.factory.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"arch.factory {spec.factory!r} cannot be imported: {e}") from e
    model = fn(**{**spec.factory_args, **overrides})
    if not isinstance(model, nn.Module):
        raise ValueError(f"arch.factory {spec.factory!r} returned {type(model).__name__}, not a torch nn.Module")
    return model


def load_torch(path: Path, spec: ModelSpec, fmt: str) -> TorchModel:
    """The torch model at ``path`` in format ``fmt``; corrupt files and NaN weights are errors."""
    try:
        if fmt == "safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
            _check_finite(state.items(), path)
            module = build_from_factory(spec)
            try:
                module.load_state_dict(state)
            except RuntimeError as e:
                raise ValueError(f"weights in {path.name} do not fit arch.factory {spec.factory!r}: {e}") from e
            return TorchModel(module.eval(), fmt)
        if fmt == "torchscript":
            module = torch.jit.load(str(path), map_location="cpu")
            _check_finite(module.named_parameters(), path)
            return TorchModel(module.eval(), fmt)
        if fmt == "pt2":
            program = torch.export.load(str(path))
            _check_finite(program.state_dict.items(), path)
            return TorchModel(program.module(), fmt, program)
    except ValueError:
        raise
    except Exception as e:  # torch/safetensors raise assorted types for a truncated file
        raise ValueError(f"corrupt {fmt} model {path.name}: {e}") from e
    raise ValueError(f"load_torch: {fmt!r} is not a torch format")


def _check_finite(named: Any, path: Path) -> None:
    for name, t in named:
        if torch.is_floating_point(t) and not torch.isfinite(t).all():
            raise ValueError(f"weight {name!r} in {path.name} contains NaN or Inf values")


def example_inputs(spec: InputSpec, batch: int = 2) -> dict[str, torch.Tensor]:
    """Zero inputs of the declared shape (tensor models) or a token batch (text models)."""
    if spec.is_text:
        ids = torch.ones(batch, 8, dtype=torch.int64)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return {spec.name: torch.zeros(batch, *spec.shape, dtype=getattr(torch, spec.dtype))}


def check_torch_inputs(model: TorchModel, spec: InputSpec) -> None:
    """Run one tiny batch of the declared shape: a mismatch fails here, before any compute."""
    example = example_inputs(spec)
    try:
        with torch.no_grad():
            model.module(*example.values())
    except Exception as e:
        shapes = {k: list(v.shape) for k, v in example.items()}
        raise ValueError(
            f"the model does not accept the declared input {shapes} ({spec.dtype}): {str(e).splitlines()[0]}"
        ) from e


def export(model: TorchModel, spec: ModelSpec, path: Path) -> Path:
    """ONNX export with a dynamic batch axis (and token axis for text)."""
    example = example_inputs(spec.input)
    dyn: dict[str, dict[int, str]] = {
        k: {0: "batch", 1: "tokens"} if spec.input.is_text else {0: "batch"} for k in example
    }
    dyn[spec.output] = {0: "batch"}
    if model.program is None:
        return onnx_export.export(model.module, example, path, spec.output, dyn)
    # A .pt2 program cannot be traced by the TorchScript exporter; the dynamo exporter
    # takes the program as it is.
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.program, tuple(example.values()), str(path), input_names=list(example),
            output_names=[spec.output], dynamo=True, opset_version=onnx_export.OPSET, verbose=False,
            external_data=False,  # one self-contained file, like every other artifact
        )  # fmt: skip
    return path


def onnx_inputs(path: Path) -> list[tuple[str, list[Any], str]]:
    """``(name, shape, type)`` of each graph input (``runtime.isolated.declared_inputs``);
    a file that does not parse is an error naming it."""
    try:
        return declared_inputs(path)
    except Exception as e:
        raise ValueError(f"corrupt ONNX model {path.name}: {e}") from e


def check_onnx_inputs(path: Path, spec: InputSpec) -> None:
    """The ONNX model's real inputs must match the declared spec: name, rank, static dims, dtype."""
    declared = onnx_inputs(path)
    names = [n for n, _, _ in declared]
    if spec.is_text:
        unknown = sorted(set(names) - set(TEXT_INPUTS))
        if "input_ids" not in names or unknown:
            raise ValueError(
                f"a text model (InputSpec.tokenizer set) must take input_ids/attention_mask; {path.name} takes {names}"
            )
        return
    if names != [spec.name]:
        raise ValueError(f"InputSpec.name is {spec.name!r} but {path.name} takes inputs {names}")
    _, shape, dtype = declared[0]
    want = ["batch", *spec.shape]
    if len(shape) != len(want) or any(
        isinstance(d, int) and d > 0 and d != w for d, w in zip(shape[1:], spec.shape, strict=False)
    ):
        raise ValueError(
            f"InputSpec.shape {list(spec.shape)} (plus a batch axis) does not match {path.name}'s input shape {shape}"
        )
    np_dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx.TensorProto.DataType.Value(dtype.upper())))
    if np_dtype != np.dtype(spec.dtype):
        raise ValueError(f"InputSpec.dtype is {spec.dtype} but {path.name}'s input {spec.name!r} is {np_dtype}")
