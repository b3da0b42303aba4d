"""Sign (binary) quantization: ``w ~ alpha * sign(w)``, one bit per weight.

``alpha`` is the mean absolute value (per tensor or per output channel), the scale that
minimises the L2 error of a sign approximation (Rastegari et al., XNOR-Net, 2016).
Zeros map to +alpha: a binary code has no zero, so a pruned weight is not kept.
"""

from __future__ import annotations

import torch


def binarize(w: torch.Tensor, per_channel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(signs in {-1, +1} as int8, alpha) of float ``w``; ``alpha`` broadcasts against ``w``."""
    w = w.detach().float()
    if not torch.isfinite(w).all():
        raise ValueError("cannot binarize a tensor with NaN or Inf values")
    signs = torch.where(w >= 0, 1, -1).to(torch.int8)
    if per_channel and w.dim() >= 2:
        alpha = w.abs().reshape(w.shape[0], -1).mean(1).reshape(-1, *([1] * (w.dim() - 1)))
    else:
        alpha = w.abs().mean()
    return signs, alpha


def dequantize(signs: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return alpha * signs.float()
