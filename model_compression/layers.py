"""Small layer builders the structural techniques share."""

from __future__ import annotations

from typing import Any

from torch import nn


def conv_like(conv: nn.Conv2d, in_channels: int, out_channels: int, bias: bool) -> nn.Conv2d:
    """A fresh Conv2d with ``conv``'s kernel size, stride, padding, dilation and padding
    mode, and the given channels; groups=1 (the callers refuse grouped convolutions)."""
    geometry: dict[str, Any] = {  # torch types these as tuple[int, ...]; they are 2-tuples
        "kernel_size": conv.kernel_size,
        "stride": conv.stride,
        "padding": conv.padding,
        "dilation": conv.dilation,
    }
    return nn.Conv2d(in_channels, out_channels, **geometry, bias=bias, padding_mode=conv.padding_mode)


def n_params(module: nn.Module) -> int:
    """Number of parameters (elements) of ``module``."""
    return sum(p.numel() for p in module.parameters())
