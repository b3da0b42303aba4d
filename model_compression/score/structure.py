"""Magnitude scores of structures: output channels/neurons, attention heads, FFN neurons.

A unit's score is the L1 norm of the weights it owns, the criterion of Li et al. (Pruning
Filters for Efficient ConvNets, 2017); for a transformer head or FFN neuron it sums what
the unit reads (its rows of Q/K/V, or of the intermediate dense) and what it writes (its
columns of the attention output, or of the output dense). Higher means more important.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def bert_of(model: nn.Module) -> Any | None:
    """The BERT model (``.encoder.layer[i].attention`` ...) inside ``model`` - itself, or
    the ``.encoder`` of a wrapper such as ``SentenceEncoder`` - or None."""
    candidates: tuple[Any, ...] = (getattr(model, "encoder", None), model)
    for candidate in candidates:
        if hasattr(candidate, "encoder") and hasattr(candidate.encoder, "layer"):
            return candidate
    return None


def unit_scores(weight: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output unit (dim 0) of a Linear or Conv weight: shape (out,)."""
    return weight.detach().abs().reshape(weight.shape[0], -1).sum(1)


def head_scores(layer: Any, head_size: int) -> torch.Tensor:
    """L1 norm of each attention head of a BERT layer: shape (heads,)."""
    att = layer.attention.self
    rows = sum(getattr(att, p).weight.detach().abs().sum(1) for p in ("query", "key", "value"))
    cols = layer.attention.output.dense.weight.detach().abs().sum(0)
    return (rows + cols).reshape(-1, head_size).sum(1)


def neuron_scores(layer: Any) -> torch.Tensor:
    """L1 norm of each FFN neuron of a BERT layer: shape (intermediate,)."""
    return layer.intermediate.dense.weight.detach().abs().sum(1) + layer.output.dense.weight.detach().abs().sum(0)


def structure_scores(model: nn.Module) -> list[dict[str, Any]]:
    """Magnitude scores of every structure that structured pruning can remove, one row
    per group: BERT layers give ``head`` and ``ffn_neuron`` rows; other models give a
    ``channel`` (Conv2d) or ``neuron`` (Linear) row for every layer but the last (the
    output layer is never pruned). Each row: layer, unit, count, scores (L1, in order)
    and their min / median / max."""
    bert = bert_of(model)
    rows: list[dict[str, Any]] = []
    if bert is not None:
        for i, layer in enumerate(bert.encoder.layer):
            size = layer.attention.self.attention_head_size
            rows.append(_row(f"layer.{i}", "head", head_scores(layer, size)))
            rows.append(_row(f"layer.{i}", "ffn_neuron", neuron_scores(layer)))
        return rows
    chain = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for name, mod in chain[:-1]:
        rows.append(_row(name, "channel" if isinstance(mod, nn.Conv2d) else "neuron", unit_scores(mod.weight)))
    return rows


def _row(layer: str, unit: str, scores: torch.Tensor) -> dict[str, Any]:
    s = scores.double()
    return {
        "layer": layer,
        "unit": unit,
        "count": int(s.numel()),
        "min": float(s.min()),
        "median": float(s.median()),
        "max": float(s.max()),
        "scores": [round(float(v), 6) for v in s],
    }
