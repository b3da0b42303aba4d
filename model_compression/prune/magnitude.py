"""Unstructured magnitude pruning: zero the smallest-|w| weights.

Zeros do not make a dense ONNX file smaller or faster; they lower the weights' entropy, so
the entropy-coded transfer size shrinks. The report labels such artifacts storage-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn


@dataclass(frozen=True)
class MagnitudePruneConfig:
    """Magnitude pruning settings.

    Attributes:
        sparsity: fraction of prunable weights set to zero, in [0, 1).
        scope: ``"global"`` ranks all prunable weights together; ``"layer"`` prunes each
            tensor to ``sparsity`` on its own; ``"sensitive"`` gives each tensor the sparsity
            its measured sensitivity allows (``prune/sensitive.py``, ``prune/onnx_sensitive.py``:
            the pipeline's prune stage runs those, since they need calibration samples).
        min_numel: tensors smaller than this are left dense (default 1024).
        skip: substrings of parameter names never pruned (embeddings, the classifier head).
    """

    sparsity: float = 0.5
    scope: Literal["global", "layer", "sensitive"] = "global"
    min_numel: int = 1024
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"MagnitudePruneConfig.sparsity must be in [0, 1), got {self.sparsity}")
        if self.scope not in ("global", "layer", "sensitive"):
            raise ValueError(f"MagnitudePruneConfig.scope must be 'global', 'layer' or 'sensitive', got {self.scope!r}")


def weight_matrices(model: nn.Module, min_numel: int, skip: tuple[str, ...]) -> list[tuple[str, nn.Parameter]]:
    """Weights of at least 2 dimensions and ``min_numel`` values whose names contain none of
    ``skip``, in ``named_parameters`` order: what pruning and weight sharing touch."""
    return [
        (n, p)
        for n, p in model.named_parameters()
        if p.dim() >= 2 and p.numel() >= min_numel and not any(s in n for s in skip)
    ]


def prunable(model: nn.Module, cfg: MagnitudePruneConfig) -> list[tuple[str, nn.Parameter]]:
    """Weight matrices that ``cfg`` allows to prune, in ``named_parameters`` order."""
    return weight_matrices(model, cfg.min_numel, cfg.skip)


def threshold(values: torch.Tensor, sparsity: float) -> float:
    """The magnitude at or below which ``sparsity`` of ``values`` (magnitudes) fall; -1 when
    nothing is to be pruned. Ties at the threshold are pruned too."""
    k = int(sparsity * values.numel())
    if k == 0:
        return -1.0  # nothing below any magnitude
    return values.kthvalue(k).values.item()


@torch.no_grad()
def prune(model: nn.Module, cfg: MagnitudePruneConfig) -> nn.Module:
    """Zero the smallest-magnitude weights of ``model`` in place and return it.

    Ties at the threshold are pruned too, so the achieved sparsity can exceed the target
    by the number of tied weights (negligible for trained float weights).
    """
    params = prunable(model, cfg)
    if not params:
        raise ValueError("model has no prunable weight matrices")
    if cfg.scope == "sensitive":
        raise ValueError("scope 'sensitive' measures each layer on calibration samples: use prune.sensitive.prune")
    if cfg.scope == "global":
        t = threshold(torch.cat([p.abs().flatten() for _, p in params]), cfg.sparsity)
        for _, p in params:
            p.masked_fill_(p.abs() <= t, 0.0)
    else:
        for _, p in params:
            p.masked_fill_(p.abs() <= threshold(p.abs().flatten(), cfg.sparsity), 0.0)
    return model


def sparsity(model: nn.Module, cfg: MagnitudePruneConfig) -> float:
    """Fraction of exact zeros over the weights ``cfg`` considers prunable."""
    params = prunable(model, cfg)
    zeros = sum(int((p == 0).sum()) for _, p in params)
    return zeros / max(1, sum(p.numel() for _, p in params))


def recipe_step(net: nn.Module, cfg: MagnitudePruneConfig, ctx: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Recipe step ``prune`` on a torch model (``registry.STEPS``)."""
    prune(net, cfg)
    return net, {"sparsity": sparsity(net, cfg)}
