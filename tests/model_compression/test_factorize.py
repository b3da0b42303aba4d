import pytest
import torch
from torch import nn

from model_compression.factorize.svd import (
    LowRankConv2d,
    LowRankEmbedding,
    LowRankLinear,
    SVDConfig,
    factorize,
    factorize_linear,
    rank_for_energy,
)


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


def _low_rank_conv(rank: int = 3) -> nn.Conv2d:
    """A 3x3 conv 16 -> 32 whose kernel matrix (32 x 144) has rank ``rank``."""
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, stride=2, padding=1)
    with torch.no_grad():
        conv.weight.copy_((torch.randn(32, rank) @ torch.randn(rank, 16 * 9)).reshape(32, 16, 3, 3))
    return conv


def test_conv_factorization_is_exact_at_the_kernels_rank_and_keeps_geometry():
    conv = _low_rank_conv(3)
    model, ranks = factorize(nn.Sequential(conv), SVDConfig(energy=0.999999, convs=True))
    assert ranks == {"0": 3}
    low = model[0]
    assert isinstance(low, LowRankConv2d) and low.down.stride == (2, 2) and low.down.padding == (1, 1)
    assert sum(p.numel() for p in low.parameters()) == 3 * (16 * 9) + 3 * 32 + 32
    x = torch.randn(2, 16, 9, 9)
    torch.testing.assert_close(low(x), conv(x), atol=1e-4, rtol=1e-4)


def test_convs_are_left_alone_unless_asked():
    _, ranks = factorize(nn.Sequential(_low_rank_conv()), SVDConfig(energy=0.99))
    assert ranks == {}


def test_embedding_factorization_is_a_narrow_lookup_and_a_projection():
    torch.manual_seed(0)
    emb = nn.Embedding(500, 64, padding_idx=0)
    with torch.no_grad():
        emb.weight.copy_(torch.randn(500, 8) @ torch.randn(8, 64))
    model, ranks = factorize(nn.Sequential(emb), SVDConfig(energy=0.999999, embeddings=True))
    assert ranks == {"0": 8}
    low = model[0]
    assert isinstance(low, LowRankEmbedding) and low.lookup.weight.shape == (500, 8)
    ids = torch.tensor([[1, 7, 499]])
    torch.testing.assert_close(low(ids), emb(ids), atol=1e-4, rtol=1e-4)


def test_a_parameter_budget_sets_ranks_across_layers_by_energy_per_parameter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 128), nn.Linear(128, 128))
    with torch.no_grad():  # layer 0 is rank 4 plus noise: its energy sits in 4 directions
        model[0].weight.copy_(torch.randn(128, 4) @ torch.randn(4, 128) + 0.01 * torch.randn(128, 128))
    dense = 2 * 128 * 128
    _, ranks = factorize(model, SVDConfig(param_budget=0.25, max_param_ratio=1.0))
    kept = sum(r * 256 for r in ranks.values())
    assert kept <= 0.25 * dense and kept > 0.25 * dense - 256  # the budget is spent
    assert 4 <= ranks["0"] < ranks["1"]  # the low-rank layer needs few; the rest go to the full one
    with pytest.raises(ValueError, match=r"param_budget must be in \(0, 1\)"):
        SVDConfig(param_budget=1.5)
