"""Truncated-SVD factorization: Linear layers, convolutions and embedding tables.

- Linear: W (out x in) ~= B (out x r) @ A (r x in), r * (in + out) parameters.
- Conv2d: the kernel reshaped to (out x in*kh*kw) is split the same way, into a kh x kw
  convolution with r output channels (same stride, padding, dilation) and a 1x1
  convolution to the out channels (Jaderberg et al., 2014; Zhang et al., 2015).
- Embedding: the table T (vocab x dim) ~= E (vocab x r) @ P (r x dim): a narrower lookup
  and a projection. MiniLM's 30522 x 384 word embeddings are half its parameters.

The rank is the smallest that keeps ``energy`` of the squared singular values, or, with a
``param_budget``, the ranks across all layers that keep the most energy per parameter
within that budget. A layer whose rank does not save enough stays dense.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model_compression.layers import conv_like, n_params


@dataclass(frozen=True)
class SVDConfig:
    """Low-rank factorization settings.

    Attributes:
        energy: fraction of the squared singular values to keep, in (0, 1]; default 0.9.
        max_param_ratio: factorize only when r*(in+out) <= this x in*out, in (0, 1];
            default 0.8.
        skip: substrings of module names never factorized (e.g. the classifier head).
        convs: also factorize Conv2d layers (default False).
        embeddings: also factorize nn.Embedding tables (default False).
        param_budget: if set, in (0, 1): the factorized layers together keep at most this
            fraction of their parameters; ranks are chosen by energy per parameter across
            layers, and ``energy`` is ignored. Default None (rank by energy).
    """

    energy: float = 0.9
    max_param_ratio: float = 0.8
    skip: tuple[str, ...] = ()
    convs: bool = False
    embeddings: bool = False
    param_budget: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.energy <= 1.0:
            raise ValueError(f"SVDConfig.energy must be in (0, 1], got {self.energy}")
        if not 0.0 < self.max_param_ratio <= 1.0:
            raise ValueError(f"SVDConfig.max_param_ratio must be in (0, 1], got {self.max_param_ratio}")
        if self.param_budget is not None and not 0.0 < self.param_budget < 1.0:
            raise ValueError(f"SVDConfig.param_budget must be in (0, 1) or null, got {self.param_budget}")


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


class LowRankConv2d(nn.Module):
    """``x -> up(down(x))``: a kh x kw conv to ``rank`` channels, then a 1x1 conv."""

    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        super().__init__()
        self.down = conv_like(conv, conv.in_channels, rank, bias=False)
        self.up = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class LowRankEmbedding(nn.Module):
    """``ids -> project(lookup(ids))``: a vocab x rank table and a rank x dim projection."""

    def __init__(self, num_embeddings: int, dim: int, rank: int, padding_idx: int | None) -> None:
        super().__init__()
        self.lookup = nn.Embedding(num_embeddings, rank, padding_idx=padding_idx)
        self.project = nn.Linear(rank, dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.project(self.lookup(ids))


def _matrix(mod: Any) -> torch.Tensor:
    """The layer's weight as the matrix that is factorized: (out, fan-in) or (vocab, dim)."""
    w = mod.weight.detach()
    return w.reshape(w.shape[0], -1) if isinstance(mod, nn.Conv2d) else w


@torch.no_grad()
def factorize_module(mod: Any, rank: int) -> nn.Module:
    """Best rank-``rank`` stand-in for a Linear, Conv2d (groups=1) or Embedding."""
    if isinstance(mod, nn.Linear):
        return factorize_linear(mod, rank)
    m = _matrix(mod)
    if not 1 <= rank <= min(m.shape):
        raise ValueError(f"rank must be in [1, min(dim)={min(m.shape)}], got {rank}")
    u, s, vh = torch.linalg.svd(m.double(), full_matrices=False)
    root = s[:rank].sqrt()
    left, right = (u[:, :rank] * root[None, :]).float(), (root[:, None] * vh[:rank]).float()
    if isinstance(mod, nn.Conv2d):
        if mod.groups != 1:
            raise ValueError("grouped/depthwise convolutions cannot be factorized")
        conv = LowRankConv2d(mod, rank)
        conv.down.weight.copy_(right.reshape(rank, *mod.weight.shape[1:]))
        conv.up.weight.copy_(left[:, :, None, None])
        if mod.bias is not None and conv.up.bias is not None:
            conv.up.bias.copy_(mod.bias)
        return conv
    if isinstance(mod, nn.Embedding):
        emb = LowRankEmbedding(mod.num_embeddings, mod.embedding_dim, rank, mod.padding_idx)
        emb.lookup.weight.copy_(left)
        emb.project.weight.copy_(right.T)
        return emb
    raise ValueError(f"cannot factorize a {type(mod).__name__}")


def _budget_ranks(mats: dict[str, torch.Tensor], budget: float) -> dict[str, int]:
    """Ranks that keep the most relative energy per parameter, all layers together, within
    ``budget`` x their dense parameters (greedy by singular value, per layer normalised)."""
    offers = []
    for name, m in mats.items():
        s = torch.linalg.svdvals(m.double())
        gain = (s**2 / (s**2).sum()).tolist()
        offers += [(g / sum(m.shape), name) for g in gain]  # energy share per parameter
    offers.sort(key=lambda o: -o[0])
    allowed = budget * sum(m.numel() for m in mats.values())
    ranks = dict.fromkeys(mats, 0)
    spent = 0
    for _, name in offers:
        cost = sum(mats[name].shape)
        if spent + cost > allowed:
            break
        ranks[name] += 1
        spent += cost
    return {n: max(r, 1) for n, r in ranks.items()}


@torch.no_grad()
def factorize(model: nn.Module, cfg: SVDConfig) -> tuple[nn.Module, dict[str, int]]:
    """Replace every worthwhile Linear (and, if enabled, Conv2d and Embedding) of ``model``,
    in place, by its low-rank stand-in.

    Returns:
        The model and ``{module name: chosen rank}`` for the layers that were factorized.
    """
    kinds: tuple[type, ...] = (
        (nn.Linear,) + ((nn.Conv2d,) if cfg.convs else ()) + ((nn.Embedding,) if cfg.embeddings else ())
    )
    targets: dict[str, Any] = {
        name: mod
        for name, mod in model.named_modules()
        if isinstance(mod, kinds) and not any(s in name for s in cfg.skip)
        and not (isinstance(mod, nn.Conv2d) and mod.groups != 1)
    }  # fmt: skip
    for name, mod in targets.items():
        if not torch.isfinite(mod.weight).all():
            raise ValueError(f"weight of {name!r} contains NaN or Inf values")
    mats = {name: _matrix(mod) for name, mod in targets.items()}
    if cfg.param_budget is not None:
        chosen = _budget_ranks(mats, cfg.param_budget)
    else:
        chosen = {n: rank_for_energy(torch.linalg.svdvals(m.double()), cfg.energy) for n, m in mats.items()}
    ranks: dict[str, int] = {}
    for name, mod in targets.items():
        rows, cols = mats[name].shape
        r = chosen[name]
        if r * (rows + cols) > cfg.max_param_ratio * rows * cols:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, factorize_module(mod, r))
        ranks[name] = r
    return model, ranks


def recipe_step(net: nn.Module, cfg: SVDConfig, ctx: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Recipe step ``factorize`` on a torch model (``registry.STEPS``)."""
    net, ranks = factorize(net, cfg)
    return net, {"ranks": ranks, "parameters": n_params(net)}
