"""Per-layer sensitivity: how much one layer's compression alone distorts the model.

For each layer and level, the layer's weight is replaced by its pruned (magnitude, within
the layer) or low-rank (truncated SVD at an energy) version, the model runs on a probe
batch, and the distortion ``1 - cosine(output, fp32 output)`` (per sample, averaged) is
recorded; the weight is then restored. The search (``search/space.py``) uses these scores
to skip fragile layers and drop levels that cannot pass, before any trial runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from model_compression.factorize.svd import rank_for_energy
from model_compression.prune.magnitude import threshold

Forward = Callable[[nn.Module], torch.Tensor]  # model -> outputs on the probe batch, (N, ...)
Perturb = Callable[[torch.Tensor, float], torch.Tensor]


def pruned_weight(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """``w`` with its ``sparsity`` smallest-|w| entries zeroed."""
    return w.masked_fill(w.abs() <= threshold(w.abs().flatten(), sparsity), 0.0)


def low_rank_weight(w: torch.Tensor, energy: float) -> torch.Tensor:
    """The best approximation of the matrix ``w`` whose rank keeps ``energy`` of its
    squared singular values (the rank ``factorize.svd`` would choose)."""
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    r = rank_for_energy(s, energy)
    return ((u[:, :r] * s[:r]) @ vh[:r]).to(w.dtype)


def distortion(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean over samples of 1 - cosine(out_i, ref_i), outputs flattened per sample."""
    a, b = out.reshape(len(out), -1).double(), ref.reshape(len(ref), -1).double()
    return float((1 - torch.nn.functional.cosine_similarity(a, b, dim=1)).mean().clamp_min(0.0))


@torch.no_grad()
def layer_sensitivity(
    model: nn.Module, layers: Sequence[str], levels: Sequence[float], perturb: Perturb, forward: Forward
) -> dict[str, dict[float, float]]:
    """``{parameter name: {level: distortion}}`` for each weight in ``layers`` (parameter
    names of ``model``) perturbed alone at each level; ``model`` is left unchanged."""
    params = dict(model.named_parameters())
    missing = [n for n in layers if n not in params]
    if missing:
        raise ValueError(f"layer_sensitivity: no parameter(s) {missing} in the model")
    model.eval()
    ref = forward(model)
    out: dict[str, dict[float, float]] = {}
    for name in layers:
        p = params[name]
        original = p.detach().clone()
        out[name] = {}
        for level in levels:
            p.copy_(perturb(original, level))
            out[name][level] = distortion(forward(model), ref)
        p.copy_(original)
    return out
