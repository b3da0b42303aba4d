"""Information-theoretic measures of weights: entropy, entropy-coded size bound, MDL.

All sizes are in bits unless a name ends in ``_bytes``. Entropies use log base 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def linear_quantize(w: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Symmetric per-tensor linear quantization to signed integers.

    Args:
        w: float tensor of any shape.
        bits: bit width in [2, 16]; default 8.

    Returns:
        int64 tensor of the same shape, values in [-(2**(bits-1)-1), 2**(bits-1)-1].
        Zeros stay exactly zero, so pruned weights keep their sparsity after quantization.
    """
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in [2, 16], got {bits}")
    qmax = 2 ** (bits - 1) - 1
    scale = w.detach().abs().max().item() / qmax
    if scale == 0.0:
        return torch.zeros_like(w, dtype=torch.int64)
    return torch.round(w.detach() / scale).clamp(-qmax, qmax).to(torch.int64)


def codebook(arr: np.ndarray, bits: int = 8) -> np.ndarray | None:
    """The sorted distinct values of a float tensor that holds at most ``2**bits`` of them
    (a weight-shared tensor: k-means, binary), else None."""
    if np.issubdtype(arr.dtype, np.integer):
        return None
    values = np.unique(arr)
    return values if values.size <= 2**bits else None


def symbols_and_codebook(arr: np.ndarray, bits: int = 8) -> tuple[np.ndarray, np.ndarray | None]:
    """(``tensor_symbols``, the ``codebook`` they index, or None when they are not indices)."""
    if np.issubdtype(arr.dtype, np.integer):
        return arr, None
    book = codebook(arr, bits)
    if book is not None:
        return np.searchsorted(book, arr).astype(np.int64), book
    return linear_quantize(torch.from_numpy(np.array(arr, dtype=np.float32)), bits).numpy(), None


def tensor_symbols(arr: np.ndarray, bits: int = 8) -> np.ndarray:
    """The symbols a coder is handed for one stored tensor: an integer tensor (already
    quantized) as it is, a weight-shared float tensor as indices into its ``codebook``
    (exact), any other float tensor after ``bits``-bit ``linear_quantize``. The entropy
    bound and the transfer package both use exactly these."""
    return symbols_and_codebook(arr, bits)[0]


def empirical_entropy(symbols: np.ndarray | torch.Tensor) -> float:
    """Empirical (zeroth-order) entropy of a discrete symbol array, in bits per symbol."""
    arr = symbols.detach().cpu().numpy() if isinstance(symbols, torch.Tensor) else symbols
    if arr.size == 0:
        return 0.0
    _, counts = np.unique(arr.ravel(), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def weight_entropy(w: torch.Tensor, bits: int = 8) -> float:
    """Entropy in bits per weight of ``w`` after ``bits``-bit linear quantization."""
    return empirical_entropy(linear_quantize(w, bits))


@dataclass(frozen=True)
class EntropyBound:
    """Entropy bound of a set of tensors coded as independent symbol streams.

    Attributes:
        numel: number of weights.
        entropy_bits: sum over tensors of numel x bits-per-weight (the Shannon bound).
        raw_bits: the same tensors stored at ``bits`` bits each, uncoded.
    """

    numel: int
    entropy_bits: float
    raw_bits: int

    @property
    def entropy_bytes(self) -> int:
        return math.ceil(self.entropy_bits / 8)


def entropy_bound(tensors: list[torch.Tensor], bits: int = 8) -> EntropyBound:
    """Sum the per-tensor entropy bounds of ``tensors`` quantized at ``bits`` bits."""
    numel = sum(t.numel() for t in tensors)
    total = sum(t.numel() * weight_entropy(t, bits) for t in tensors)
    return EntropyBound(numel=numel, entropy_bits=total, raw_bits=numel * bits)


def description_length_bits(model_bytes: float, metrics: dict[str, float]) -> float | None:
    """Two-part minimum description length in bits: L(model) + L(data | model).

    Args:
        model_bytes: bytes to transmit the model (its transfer package, or the entropy
            bound of its weights where there is no package yet).
        metrics: an artifact's quality metrics; ``nll_bits`` is the evaluation labels'
            code length given the model. Without it (no labels to code, e.g. sentence
            embeddings) there is no description length: None.
    """
    data_bits = metrics.get("nll_bits")
    return None if data_bits is None else 8 * model_bytes + float(data_bits)
