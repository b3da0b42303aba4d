import numpy as np
import pytest
import torch

from model_compression.info.entropy import (
    description_length_bits,
    empirical_entropy,
    entropy_bound,
    linear_quantize,
    weight_entropy,
)


def test_entropy_of_uniform_symbols_is_log2_of_alphabet():
    assert empirical_entropy(np.arange(256).repeat(4)) == pytest.approx(8.0)
    assert empirical_entropy(np.zeros(100)) == 0.0


def test_entropy_of_a_skewed_source():
    # p = (3/4, 1/4): H = 0.811278 bits
    assert empirical_entropy(np.array([0, 0, 0, 1] * 50)) == pytest.approx(0.811278, abs=1e-6)


def test_linear_quantize_keeps_zeros_and_range():
    w = torch.tensor([0.0, 1.0, -1.0, 0.5, 0.0])
    q = linear_quantize(w, 8)
    assert q.tolist() == [0, 127, -127, 64, 0]
    with pytest.raises(ValueError, match="bits must be in"):
        linear_quantize(w, 1)


def test_pruning_lowers_weight_entropy():
    torch.manual_seed(0)
    w = torch.randn(256, 256)
    dense = weight_entropy(w)
    pruned = w.masked_fill(w.abs() < w.abs().median(), 0.0)
    assert weight_entropy(pruned) < dense - 1.0  # half the weights collapse onto one symbol
    assert 5.0 < dense < 8.0


def test_entropy_bound_sums_tensors():
    a = torch.zeros(1000)
    b = torch.tensor([1.0, -1.0] * 500)  # exactly 1 bit per weight
    bound = entropy_bound([a, b], bits=8)
    assert bound.numel == 2000
    assert bound.entropy_bits == pytest.approx(1000.0)
    assert bound.entropy_bytes == 125
    assert bound.raw_bits == 16000


def test_description_length_is_model_bytes_in_bits_plus_the_labels_code_length():
    assert description_length_bits(100, {"nll_bits": 50.0}) == pytest.approx(850.0)  # 8 bits a byte, plus the data
    assert description_length_bits(100, {"cosine_to_fp32": 0.99}) is None  # no labels to code
