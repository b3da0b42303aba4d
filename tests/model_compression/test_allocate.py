"""Per-layer levels from sensitivity: allocation, sensitivity-pruning, sensitivity-k-means."""

import pytest
import torch
from torch import nn

from model_compression.prune.sensitive import SensitivePruneConfig, plan
from model_compression.prune.sensitive import prune as sensitive_prune
from model_compression.quantize.kmeans import SensitiveKMeansConfig, share_sensitive
from model_compression.score.allocate import allocate


def test_the_budget_goes_to_the_fragile_layer():
    # two layers of 100 weights; pruning "fragile" hurts 10x more at every level
    options = {
        "robust": {0.0: (0.0, 100.0), 0.5: (0.01, 50.0), 0.9: (0.05, 10.0)},
        "fragile": {0.0: (0.0, 100.0), 0.5: (0.1, 50.0), 0.9: (0.5, 10.0)},
    }
    assert allocate(options, 110.0) == {"robust": 0.9, "fragile": 0.0}
    assert allocate(options, 60.0) == {"robust": 0.9, "fragile": 0.5}
    assert allocate(options, 200.0) == {"robust": 0.0, "fragile": 0.0}
    with pytest.raises(ValueError, match="below the cheapest allocation 20"):
        allocate(options, 19.0)
    with pytest.raises(ValueError, match="at least one level per layer"):
        allocate({"a": {}}, 1.0)


def net_and_forward() -> tuple[nn.Module, object]:
    """Layer 0's weights barely matter (its output is mostly a large bias); layer 2's do."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    with torch.no_grad():
        model[0].weight.mul_(0.01)
        model[0].bias.fill_(1.0)
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    return model, lambda m: m(x)


def test_sensitive_pruning_meets_the_target_and_spares_the_sensitive_layer():
    model, forward = net_and_forward()
    cfg = SensitivePruneConfig(sparsity=0.6, levels=(0.0, 0.5, 0.9), min_numel=1000)
    chosen = plan(model, cfg, forward)
    assert set(chosen) == {"0.weight", "2.weight"}  # the 4x64 head is below min_numel
    assert chosen == {"0.weight": 0.9, "2.weight": 0.5}
    pruned, _ = sensitive_prune(model, cfg, forward)
    zeros = sum(int((pruned[i].weight == 0).sum()) for i in (0, 2))
    assert zeros / (2 * 64 * 64) >= 0.6 - 1e-3
    assert (pruned[2].weight == 0).float().mean().item() == pytest.approx(0.5, abs=1e-3)


def test_sensitive_pruning_validates():
    with pytest.raises(ValueError, match=r"sparsity must be in \(0, 1\)"):
        SensitivePruneConfig(sparsity=0.0)
    with pytest.raises(ValueError, match=r"below the target sparsity 0\.9"):
        SensitivePruneConfig(sparsity=0.9, levels=(0.0, 0.5))


def test_sensitive_kmeans_gives_more_bits_to_the_sensitive_tensor():
    model, forward = net_and_forward()
    cfg = SensitiveKMeansConfig(mean_bits=3.0, choices=(1, 2, 3, 4, 5), min_numel=1000)
    shared, bits = share_sensitive(model, cfg, forward)
    assert bits["2.weight"] > bits["0.weight"]
    assert (bits["0.weight"] + bits["2.weight"]) / 2 <= 3.0
    for name, b in bits.items():
        assert dict(shared.named_parameters())[name].unique().numel() <= 2**b
    with pytest.raises(ValueError, match="mean_bits must lie within the choices"):
        SensitiveKMeansConfig(mean_bits=9.0)
