"""k-means weight sharing with a codebook (Han et al., Deep Compression, 2016).

Each weight matrix keeps ``2**bits`` shared values: its non-zero weights are clustered in
1-D by Lloyd's algorithm from a linear initialisation over [min, max] (the paper's best
init: it keeps the rare large weights, which matter most), and each weight is replaced
by its centroid. Pruned zeros stay exactly zero and are not clustered, so a tensor holds
at most ``2**bits + 1`` distinct values: an index per weight plus a codebook. The
transfer package (``info.package``) codes such tensors as codebook indices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model_compression.chain import PROBE_SAMPLES, probe_forward
from model_compression.prune.magnitude import weight_matrices


@dataclass(frozen=True)
class KMeansConfig:
    """Attributes:
    bits: log2 of the codebook size per tensor, in [1, 8] (default 4: 16 shared values).
    iters: Lloyd iterations, >= 1 (default 30; 1-D k-means converges in a few).
    min_numel: tensors smaller than this keep their float values (default 1024).
    skip: substrings of parameter names left alone.
    """

    bits: int = 4
    iters: int = 30
    min_numel: int = 1024
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 8:
            raise ValueError(f"KMeansConfig.bits must be in [1, 8], got {self.bits}")
        if self.iters < 1:
            raise ValueError(f"KMeansConfig.iters must be >= 1, got {self.iters}")


def cluster(w: torch.Tensor, bits: int = 4, iters: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """(codebook of at most ``2**bits`` sorted centroids, each a float16 value, int64 index
    per non-zero weight in ``w.flatten()`` order) of the non-zero values of ``w``.
    Deterministic."""
    values = w.detach().flatten().float()
    values = values[values != 0]
    if values.numel() == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    if not torch.isfinite(values).all():
        raise ValueError("cannot cluster weights with NaN or Inf values")
    k = min(2**bits, int(values.unique().numel()))
    centroids = torch.linspace(values.min().item(), values.max().item(), k)
    for _ in range(iters):
        # 1-D: the nearest centroid is found by bucketing between sorted midpoints
        idx = torch.bucketize(values, (centroids[1:] + centroids[:-1]) / 2)
        sums = torch.zeros(k).index_add_(0, idx, values)
        counts = torch.zeros(k).index_add_(0, idx, torch.ones_like(values))
        moved = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        moved, _ = moved.sort()
        if torch.equal(moved, centroids):
            break
        centroids = moved
    # float16 centroids: the package stores the codebook in half the bytes, exactly
    centroids = centroids.half().float().unique()
    idx = torch.bucketize(values, (centroids[1:] + centroids[:-1]) / 2)
    return centroids, idx


def shareable(model: nn.Module, cfg: KMeansConfig) -> list[tuple[str, nn.Parameter]]:
    return weight_matrices(model, cfg.min_numel, cfg.skip)


@torch.no_grad()
def share(model: nn.Module, cfg: KMeansConfig) -> nn.Module:
    """Replace every shareable weight matrix of ``model`` by its k-means centroids, in place."""
    params = shareable(model, cfg)
    if not params:
        raise ValueError("model has no weight matrices to share (all below min_numel or skipped)")
    for _, p in params:
        p.copy_(shared_weight(p.detach(), cfg.bits, cfg.iters))
    return model


def distinct_values(model: nn.Module, cfg: KMeansConfig) -> dict[str, int]:
    """Number of distinct values (zero included) of each shareable tensor."""
    return {n: int(p.detach().unique().numel()) for n, p in shareable(model, cfg)}


def shared_weight(w: torch.Tensor, bits: float, iters: int = 30) -> torch.Tensor:
    """``w`` with its non-zero values replaced by their ``bits``-bit k-means centroids."""
    book, idx = cluster(w, int(bits), iters)
    out = w.detach().clone()
    flat = out.view(-1)
    flat[flat != 0] = book[idx].to(w.dtype)
    return out


@dataclass(frozen=True)
class SensitiveKMeansConfig:
    """k-means weight sharing with a bit width per tensor, set by sensitivity.

    Attributes:
        mean_bits: the average codebook bits per shared weight to meet, > 0 (default 3).
        choices: candidate bit widths per tensor, each in [1, 8] (default 2 to 6).
        iters: Lloyd iterations (default 30).
        min_numel: tensors smaller than this keep their float values (default 1024).
        skip: substrings of parameter names left alone.
    """

    mean_bits: float = 3.0
    choices: tuple[int, ...] = (2, 3, 4, 5, 6)
    iters: int = 30
    min_numel: int = 1024
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.choices or any(not 1 <= b <= 8 for b in self.choices):
            raise ValueError(f"SensitiveKMeansConfig.choices must be bit widths in [1, 8], got {list(self.choices)}")
        if not min(self.choices) <= self.mean_bits <= max(self.choices):
            raise ValueError(
                f"SensitiveKMeansConfig.mean_bits must lie within the choices "
                f"[{min(self.choices)}, {max(self.choices)}], got {self.mean_bits}"
            )


@torch.no_grad()
def share_sensitive(
    model: nn.Module, cfg: SensitiveKMeansConfig, forward: Callable[[nn.Module], torch.Tensor]
) -> tuple[nn.Module, dict[str, int]]:
    """Share every shareable tensor of ``model`` in place, each at the bit width that
    ``score.allocate`` picks from its measured sensitivity; returns (model, {name: bits})."""
    from model_compression.score.allocate import allocate
    from model_compression.score.sensitivity import layer_sensitivity

    base = KMeansConfig(bits=max(cfg.choices), iters=cfg.iters, min_numel=cfg.min_numel, skip=cfg.skip)
    params = shareable(model, base)
    if not params:
        raise ValueError("model has no weight matrices to share (all below min_numel or skipped)")
    numel = {n: int((p != 0).sum()) for n, p in params}
    levels = [float(b) for b in sorted(set(cfg.choices))]
    perturb = functools.partial(shared_weight, iters=cfg.iters)
    sens = layer_sensitivity(model, list(numel), levels, perturb, forward)
    options = {n: {b: (sens[n][b], numel[n] * b) for b in levels} for n in numel}
    chosen = allocate(options, cfg.mean_bits * sum(numel.values()))
    named = dict(model.named_parameters())
    for name, bits in chosen.items():
        named[name].copy_(perturb(named[name].detach(), bits))
    return model, {n: int(b) for n, b in chosen.items()}


def recipe_step(net: nn.Module, cfg: KMeansConfig, ctx: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Recipe step ``kmeans`` (``registry.STEPS``)."""
    net = share(net, cfg)
    return net, {"max_distinct_values": max(distinct_values(net, cfg).values())}


def sensitive_step(net: nn.Module, cfg: SensitiveKMeansConfig, ctx: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Recipe step ``kmeans_sensitive``: bits per layer from sensitivity on calibration samples."""
    _, forward = probe_forward(ctx.calibration(), PROBE_SAMPLES)
    net, bits = share_sensitive(net, cfg, forward)
    return net, {"bits_by_layer": bits}
