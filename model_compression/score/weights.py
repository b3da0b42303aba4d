"""Per-layer weight scores: magnitude statistics and 8-bit weight entropy.

The scores say where compression is cheap: layers with low entropy code small, layers
with many near-zero weights prune cheaply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from model_compression.info.entropy import weight_entropy


@dataclass(frozen=True)
class ScoreConfig:
    """How to score weights.

    Attributes:
        bits: bit width the entropy is measured at (default 8).
        min_numel: skip tensors smaller than this (biases, LayerNorm); default 1024.
    """

    bits: int = 8
    min_numel: int = 1024

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 16:
            raise ValueError(f"ScoreConfig.bits must be in [2, 16], got {self.bits}")
        if self.min_numel < 1:
            raise ValueError(f"ScoreConfig.min_numel must be >= 1, got {self.min_numel}")


@dataclass(frozen=True)
class LayerScore:
    """Scores of one weight tensor.

    ``mean_abs``, ``std`` and ``max_abs`` are in the weight's own units; ``sparsity`` is the
    fraction of exact zeros; ``entropy_bits`` is bits per weight at ``ScoreConfig.bits``.
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    mean_abs: float
    std: float
    max_abs: float
    sparsity: float
    entropy_bits: float

    def as_row(self) -> dict[str, object]:
        row = asdict(self)
        row["shape"] = "x".join(map(str, self.shape))
        return row


def score(model: nn.Module, cfg: ScoreConfig | None = None) -> list[LayerScore]:
    """Score every weight matrix of ``model`` (parameters with >= 2 dims and ``min_numel``)."""
    cfg = cfg or ScoreConfig()
    rows = []
    for name, p in model.named_parameters():
        if p.dim() < 2 or p.numel() < cfg.min_numel:
            continue
        w = p.detach().float()
        if not torch.isfinite(w).all():
            raise ValueError(f"weight {name!r} contains NaN or Inf values")
        rows.append(
            LayerScore(
                name=name,
                shape=tuple(w.shape),
                numel=w.numel(),
                mean_abs=w.abs().mean().item(),
                std=w.std().item(),
                max_abs=w.abs().max().item(),
                sparsity=(w == 0).float().mean().item(),
                entropy_bits=weight_entropy(w, cfg.bits),
            )
        )
    return rows
