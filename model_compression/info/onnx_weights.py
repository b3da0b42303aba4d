"""The entropy bound of an ONNX artifact's weights.

For each initializer with at least ``min_numel`` elements: integer tensors (already
quantized) are measured as they are; float tensors are measured after 8-bit linear
quantization, the precision an entropy coder would be handed. The bound is what an ideal
zeroth-order coder would need for those symbols, without codebooks or scales.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from model_compression.info.entropy import empirical_entropy, tensor_symbols
from model_compression.quantize.onnx_codebook import dense, index_bits


@dataclass(frozen=True)
class WeightBound:
    """Weights counted, their entropy bound in bytes, and their nonzero fraction."""

    numel: int
    entropy_bytes: int
    density: float


def _weights(model: onnx.ModelProto, bits: int, min_numel: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, values, symbols)`` of each weight with ``min_numel``+ elements (a graph's
    codebook-coded tensors decoded): integer tensors are their own symbols, float tensors
    are ``bits``-bit linearly quantized."""
    for init in dense(model).graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.size < min_numel:
            continue
        yield init.name, arr, tensor_symbols(arr, bits)


def onnx_weight_bound(path: str | Path, bits: int = 8, min_numel: int = 1024) -> WeightBound:
    numel, total_bits, nonzero = 0, 0.0, 0
    for _, arr, symbols in _weights(onnx.load(str(path)), bits, min_numel):
        numel += arr.size
        nonzero += int(np.count_nonzero(symbols))
        total_bits += arr.size * empirical_entropy(symbols)
    return WeightBound(numel=numel, entropy_bytes=math.ceil(total_bits / 8), density=nonzero / max(numel, 1))


@dataclass(frozen=True)
class LayerStats:
    """One weight tensor of an ONNX artifact.

    ``storage_bits`` is bits per stored element (32 for fp32, 8 for int8, the index width
    of a codebook-coded tensor);
    ``entropy_bits`` is the zeroth-order entropy per element of its symbols (float
    tensors after ``bits``-bit linear quantization); ``sparsity`` the fraction of zeros.
    """

    name: str
    numel: int
    storage_bits: int
    entropy_bits: float
    sparsity: float


def onnx_layer_stats(path: str | Path, bits: int = 8, min_numel: int = 1024) -> list[LayerStats]:
    """Per-tensor storage, entropy and sparsity of the initializers with ``min_numel``+ elements."""
    model = onnx.load(str(path))
    coded, out = index_bits(model), []
    for name, arr, symbols in _weights(model, bits, min_numel):
        out.append(
            LayerStats(
                name=name,
                numel=int(arr.size),
                storage_bits=coded.get(name, arr.dtype.itemsize * 8),
                entropy_bits=float(empirical_entropy(symbols)),
                sparsity=float(1 - np.count_nonzero(arr) / arr.size),
            )
        )
    return out
