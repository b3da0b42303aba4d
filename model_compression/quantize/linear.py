"""Linear (uniform) quantization of a weight tensor: the primitive every int scheme uses.

``w ~ scale * (q - zero_point)``, with ``q`` integers of ``bits`` bits, per tensor or per
output channel (dim 0), symmetric (zero_point 0, zeros stay exact) or asymmetric (the
range [min, max] is mapped onto the full integer range).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LinearQuantConfig:
    """Attributes:
    bits: integer width in [2, 16] (default 8).
    symmetric: signed symmetric grid [-(2^(b-1)-1), 2^(b-1)-1] (default) or unsigned
        asymmetric [0, 2^b - 1] with a zero point.
    per_channel: one scale per output channel (dim 0) instead of one per tensor.
    """

    bits: int = 8
    symmetric: bool = True
    per_channel: bool = False

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 16:
            raise ValueError(f"LinearQuantConfig.bits must be in [2, 16], got {self.bits}")


@dataclass(frozen=True)
class Quantized:
    """Integer codes and how to map them back: ``scale * (codes - zero_point)``; scale and
    zero_point broadcast against ``codes`` (shape (C, 1, ...) per channel, () per tensor)."""

    codes: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor

    def dequantize(self) -> torch.Tensor:
        return self.scale * (self.codes - self.zero_point).to(self.scale.dtype)


def _reduce(w: torch.Tensor, per_channel: bool, fn: str) -> torch.Tensor:
    if not per_channel or w.dim() < 2:
        return getattr(w, fn)()
    flat = w.reshape(w.shape[0], -1)
    out = flat.amax(1) if fn == "max" else flat.amin(1)
    return out.reshape(-1, *([1] * (w.dim() - 1)))


def quantize(w: torch.Tensor, cfg: LinearQuantConfig = LinearQuantConfig()) -> Quantized:
    """Quantize float ``w`` (any shape) to ``cfg.bits``-bit integer codes (int64)."""
    w = w.detach().float()
    if not torch.isfinite(w).all():
        raise ValueError("cannot quantize a tensor with NaN or Inf values")
    if cfg.symmetric:
        qmax = 2 ** (cfg.bits - 1) - 1
        peak = _reduce(w.abs(), cfg.per_channel, "max")
        scale = torch.where(peak > 0, peak / qmax, torch.ones_like(peak))
        codes = torch.round(w / scale).clamp(-qmax, qmax).to(torch.int64)
        return Quantized(codes, scale, torch.zeros_like(scale, dtype=torch.int64))
    qmax = 2**cfg.bits - 1
    lo = _reduce(w, cfg.per_channel, "min").clamp(max=0.0)  # the range holds 0: zero is exact
    hi = _reduce(w, cfg.per_channel, "max").clamp(min=0.0)
    scale = torch.where(hi > lo, (hi - lo) / qmax, torch.ones_like(hi))
    zero = torch.round(-lo / scale).to(torch.int64)
    codes = (torch.round(w / scale) + zero).clamp(0, qmax).to(torch.int64)
    return Quantized(codes, scale, zero)


def sqnr_db(w: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio of ``approx`` against ``w``, in dB (inf if exact)."""
    noise = (w.float() - approx.float()).pow(2).sum().item()
    signal = w.float().pow(2).sum().item()
    if noise == 0.0:
        return float("inf")
    return 10.0 * torch.log10(torch.tensor(signal / noise)).item()
