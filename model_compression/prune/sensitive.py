"""Sensitivity-allocated magnitude pruning: each layer gets its own sparsity.

Every prunable weight is pruned alone at each candidate sparsity and the model's output
distortion on a probe batch is measured (``score.sensitivity``); ``score.allocate`` then
picks per-layer sparsities that reach the overall target with the least summed
distortion. The caller supplies ``forward`` (model -> outputs on its calibration probes),
so the library needs no data of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model_compression.chain import PROBE_SAMPLES, probe_forward
from model_compression.prune.magnitude import weight_matrices
from model_compression.score.allocate import allocate
from model_compression.score.sensitivity import Forward, layer_sensitivity, pruned_weight


@dataclass(frozen=True)
class SensitivePruneConfig:
    """Attributes:
    sparsity: overall fraction of prunable weights removed, in (0, 1).
    levels: candidate per-layer sparsities, each in [0, 1) (default 0 to 0.98).
    min_numel: tensors smaller than this stay dense (default 1024).
    skip: substrings of parameter names never pruned.
    """

    sparsity: float = 0.8
    levels: tuple[float, ...] = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
    min_numel: int = 1024
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"SensitivePruneConfig.sparsity must be in (0, 1), got {self.sparsity}")
        if not self.levels or any(not 0.0 <= v < 1.0 for v in self.levels):
            raise ValueError(f"SensitivePruneConfig.levels must be sparsities in [0, 1), got {list(self.levels)}")
        if max(self.levels) < self.sparsity:
            raise ValueError(
                f"SensitivePruneConfig.levels top out at {max(self.levels)}, below the target sparsity {self.sparsity}"
            )


def plan(model: nn.Module, cfg: SensitivePruneConfig, forward: Forward) -> dict[str, float]:
    """``{parameter name: sparsity}`` meeting ``cfg.sparsity`` overall with least distortion."""
    params = weight_matrices(model, cfg.min_numel, cfg.skip)
    if not params:
        raise ValueError("model has no prunable weight matrices")
    numel = {n: p.numel() for n, p in params}
    levels = sorted(set(cfg.levels))
    sens = layer_sensitivity(model, list(numel), [v for v in levels if v > 0], pruned_weight, forward)
    options = {n: {v: (sens[n].get(v, 0.0), numel[n] * (1 - v)) for v in levels} for n in numel}
    return allocate(options, (1 - cfg.sparsity) * sum(numel.values()))


@torch.no_grad()
def prune(model: nn.Module, cfg: SensitivePruneConfig, forward: Forward) -> tuple[nn.Module, dict[str, float]]:
    """Prune ``model`` in place at its planned per-layer sparsities; returns (model, plan)."""
    chosen = plan(model, cfg, forward)
    params = dict(model.named_parameters())
    for name, level in chosen.items():
        if level > 0:
            params[name].copy_(pruned_weight(params[name].detach(), level))
    return model, chosen


def recipe_step(net: nn.Module, cfg: SensitivePruneConfig, ctx: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Recipe step ``prune_sensitive``: sensitivity measured on the kind's calibration samples."""
    _, forward = probe_forward(ctx.calibration(), PROBE_SAMPLES)
    net, chosen = prune(net, cfg, forward)
    return net, {"sparsity_by_layer": chosen}
