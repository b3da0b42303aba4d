"""Truncated-SVD factorization of Linear layers: W (out x in) ~= B (out x r) @ A (r x in).

A factorized layer costs r * (in + out) parameters instead of in * out, so it only pays
when r < in * out / (in + out). The rank is the smallest that keeps ``energy`` of the
squared singular values; layers where that rank does not save enough stay dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class SVDConfig:
    """Low-rank factorization settings.

    Attributes:
        energy: fraction of the squared singular values to keep, in (0, 1]; default 0.9.
        max_param_ratio: factorize only when r*(in+out) <= this x in*out, in (0, 1];
            default 0.8.
        skip: substrings of module names never factorized (e.g. the classifier head).
    """

    energy: float = 0.9
    max_param_ratio: float = 0.8
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 < self.energy <= 1.0:
            raise ValueError(f"SVDConfig.energy must be in (0, 1], got {self.energy}")
        if not 0.0 < self.max_param_ratio <= 1.0:
            raise ValueError(f"SVDConfig.max_param_ratio must be in (0, 1], got {self.max_param_ratio}")


class LowRankLinear(nn.Module):
    """``x -> up(down(x))``: a rank-r stand-in for an ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool) -> None:
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def rank_for_energy(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest r whose top-r squared singular values hold ``energy`` of the total."""
    e = singular_values.double() ** 2
    cum = torch.cumsum(e, 0) / e.sum()
    return int(torch.searchsorted(cum, torch.tensor(energy, dtype=cum.dtype)).item()) + 1


@torch.no_grad()
def factorize_linear(layer: nn.Linear, rank: int) -> LowRankLinear:
    """Best rank-``rank`` approximation of ``layer`` (Eckart-Young), split as sqrt(S) each side."""
    out_f, in_f = layer.weight.shape
    if not 1 <= rank <= min(out_f, in_f):
        raise ValueError(f"rank must be in [1, min(dim)={min(out_f, in_f)}], got {rank}")
    u, s, vh = torch.linalg.svd(layer.weight.double(), full_matrices=False)
    root = s[:rank].sqrt()
    low = LowRankLinear(in_f, out_f, rank, bias=layer.bias is not None)
    low.down.weight.copy_((root[:, None] * vh[:rank]).to(layer.weight.dtype))
    low.up.weight.copy_((u[:, :rank] * root[None, :]).to(layer.weight.dtype))
    if layer.bias is not None:
        low.up.bias.copy_(layer.bias)
    return low


@torch.no_grad()
def factorize(model: nn.Module, cfg: SVDConfig) -> tuple[nn.Module, dict[str, int]]:
    """Replace every worthwhile ``nn.Linear`` in ``model`` (in place) by a ``LowRankLinear``.

    Returns:
        The model and ``{module name: chosen rank}`` for the layers that were factorized.
    """
    ranks: dict[str, int] = {}
    targets = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and not any(s in name for s in cfg.skip)
    ]
    for name, mod in targets:
        out_f, in_f = mod.weight.shape
        if not torch.isfinite(mod.weight).all():
            raise ValueError(f"weight of {name!r} contains NaN or Inf values")
        s = torch.linalg.svdvals(mod.weight.double())
        r = rank_for_energy(s, cfg.energy)
        if r * (in_f + out_f) > cfg.max_param_ratio * in_f * out_f:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, factorize_linear(mod, r))
        ranks[name] = r
    return model, ranks
