import pytest
import torch
from torch import nn

from model_compression.prune.magnitude import MagnitudePruneConfig, prune, sparsity


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def test_layer_scope_hits_target_sparsity_per_tensor():
    model = prune(mlp(), MagnitudePruneConfig(sparsity=0.5, scope="layer", min_numel=1))
    for p in (model[0].weight, model[2].weight):
        assert (p == 0).float().mean().item() == pytest.approx(0.5, abs=1e-3)
    assert model[0].bias.count_nonzero() == 128  # biases are never pruned


def test_global_scope_prunes_smallest_weights_overall():
    model = mlp()
    with torch.no_grad():
        model[2].weight.mul_(100.0)  # the head's weights are now far larger than layer 0's
    prune(model, MagnitudePruneConfig(sparsity=0.5, scope="global", min_numel=1))
    cfg = MagnitudePruneConfig(sparsity=0.5, min_numel=1)
    assert sparsity(model, cfg) == pytest.approx(0.5, abs=1e-3)
    assert (model[2].weight == 0).float().mean() < 0.02  # only the few near-zero head weights go
    assert (model[0].weight == 0).float().mean() > 0.55


def test_skip_and_min_numel_leave_tensors_dense():
    model = prune(mlp(), MagnitudePruneConfig(sparsity=0.9, min_numel=1, skip=("2.",)))
    assert (model[2].weight == 0).sum() == 0
    assert (model[0].weight == 0).float().mean().item() == pytest.approx(0.9, abs=1e-3)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        MagnitudePruneConfig(sparsity=bad)


def test_nothing_to_prune_is_an_error():
    with pytest.raises(ValueError, match="no prunable weight"):
        prune(nn.Sequential(nn.Linear(2, 2)), MagnitudePruneConfig(min_numel=1000))
