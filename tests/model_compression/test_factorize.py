import pytest
import torch
from torch import nn

from model_compression.factorize.svd import LowRankLinear, SVDConfig, factorize, factorize_linear, rank_for_energy


def test_rank_for_energy():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert rank_for_energy(s, 0.5) == 1
    assert rank_for_energy(s, 0.9) == 2
    assert rank_for_energy(s, 1.0) == 3


def test_full_rank_factorization_is_exact_and_low_rank_is_eckart_young():
    torch.manual_seed(0)
    layer = nn.Linear(40, 30)
    x = torch.randn(8, 40)
    full = factorize_linear(layer, 30)
    torch.testing.assert_close(full(x), layer(x), atol=1e-5, rtol=1e-5)
    low = factorize_linear(layer, 5)
    w_low = low.up.weight @ low.down.weight
    s = torch.linalg.svdvals(layer.weight.detach().double())
    err = torch.linalg.matrix_norm(layer.weight.detach().double() - w_low.double())
    assert err.item() == pytest.approx(s[5:].pow(2).sum().sqrt().item(), rel=1e-4)


def test_factorize_replaces_only_layers_that_save_parameters():
    torch.manual_seed(0)
    # a rank-4 256x256 matrix (plus noise) factorizes; the 10-way head is skipped by name
    big = nn.Linear(256, 256)
    with torch.no_grad():
        big.weight.copy_(torch.randn(256, 4) @ torch.randn(4, 256) + 1e-4 * torch.randn(256, 256))
    model = nn.Sequential(big, nn.ReLU(), nn.Linear(256, 10))
    before = sum(p.numel() for p in model.parameters())
    model, ranks = factorize(model, SVDConfig(energy=0.99, skip=("2",)))
    assert ranks == {"0": 4}
    assert isinstance(model[0], LowRankLinear)
    after = sum(p.numel() for p in model.parameters())
    assert before - after == 256 * 256 - 4 * 512


def test_rank_larger_than_min_dim_is_rejected():
    with pytest.raises(ValueError, match=r"rank must be in \[1, min\(dim\)=3\]"):
        factorize_linear(nn.Linear(3, 8), 4)


def test_energy_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"SVDConfig\.energy"):
        SVDConfig(energy=0.0)


def test_nan_weights_are_rejected():
    layer = nn.Linear(64, 64)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        factorize(nn.Sequential(layer), SVDConfig())
