"""The search's pure parts: sensitivity, the space it prunes, tolerances, the Pareto
front and the bootstrap intervals of the regression gate."""

import numpy as np
import pytest
import torch
from torch import nn

from model_compression.score.sensitivity import distortion, layer_sensitivity, low_rank_weight, pruned_weight
from model_compression.search.pareto import front
from model_compression.search.space import Recipe, SearchConfig, allowed_drop, candidates, shortfall
from model_compression.stats.bootstrap import paired, ratio_of_medians


def test_sensitivity_grows_with_the_level_and_leaves_the_model_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    x = torch.randn(64, 16)
    before = {n: p.clone() for n, p in model.named_parameters()}
    sens = layer_sensitivity(model, ["0.weight", "2.weight"], [0.3, 0.6, 0.9], pruned_weight, lambda m: m(x))
    for layer in ("0.weight", "2.weight"):
        d = sens[layer]
        assert 0 < d[0.3] < d[0.6] < d[0.9] < 1
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    svd = layer_sensitivity(model, ["0.weight"], [0.5, 0.99], low_rank_weight, lambda m: m(x))
    assert svd["0.weight"][0.99] < svd["0.weight"][0.5]
    assert distortion(x, x) == pytest.approx(0.0, abs=1e-12) and distortion(-x, x) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['9.weight'\]"):
        layer_sensitivity(model, ["9.weight"], [0.5], pruned_weight, lambda m: m(x))


def test_sensitivity_prunes_the_space_and_orders_it_safest_first():
    cfg = SearchConfig(sparsity=(0.0, 0.5, 0.9), energy=(1.0, 0.9), int8=(False, True), max_trials=20,
                       max_layer_distortion=0.05, max_total_distortion=0.1)  # fmt: skip
    prune_sens = {"a": {0.5: 0.01, 0.9: 0.2}, "b": {0.5: 0.02, 0.9: 0.04}, "c": {0.5: 0.06, 0.9: 0.3}}
    svd_sens = {"fc": {0.9: 0.03}}
    recipes, dropped = candidates(cfg, prune_sens, svd_sens)
    # prune at 0.5: layer c alone costs 0.06 > 0.05, so it is skipped; a + b = 0.03 stays
    # prune at 0.9: a and c skipped, b alone = 0.04: kept
    assert {r.prune_skip for r in recipes if r.sparsity == 0.5} == {("c",)}
    assert {r.prune_skip for r in recipes if r.sparsity == 0.9} == {("a", "c")}
    assert len(recipes) == 3 * 2 * 2 - 1 and "fp32" not in {r.name for r in recipes}
    assert recipes[0].name == "int8" and recipes[1].name == "prune0.5+int8"
    assert [r.predicted_distortion for r in recipes] == sorted(r.predicted_distortion for r in recipes)
    tight = SearchConfig(sparsity=(0.5, 0.9), energy=(1.0,), int8=(False,), max_layer_distortion=0.05,
                         max_total_distortion=0.035)  # fmt: skip
    recipes, dropped = candidates(tight, prune_sens)
    assert [r.name for r in recipes] == ["prune0.5"]
    assert dropped == ["prune at 0.9: predicted distortion 0.0400 > max_total_distortion 0.035 "
                       "even without its 2 most sensitive layer(s)"]  # fmt: skip
    # a level at which every layer is too sensitive leaves nothing to prune: dropped, not tried
    fragile = {"a": {0.5: 0.01, 0.9: 0.2}, "c": {0.5: 0.02, 0.9: 0.3}}
    recipes, dropped = candidates(tight, fragile)
    assert [r.name for r in recipes] == ["prune0.5"]
    assert dropped == ["prune at 0.9: every layer's predicted distortion exceeds max_layer_distortion 0.05, "
                       "so no layer is left to apply it to"]  # fmt: skip
    few, dropped = candidates(SearchConfig(max_trials=2), None, None, allow_int8=False)
    assert len(few) == 2 and not any(r.int8 for r in few)
    assert dropped[0] == "int8: the model's quantize section is null" and "beyond max_trials=2" in dropped[1]
    assert Recipe(0.5, 0.9, True).name == "prune0.5+svd0.9+int8"


@pytest.mark.parametrize(
    "field, value, message",
    [("budget_s", 0, "budget_s must be > 0 seconds"), ("sparsity", (1.0,), "sparsity levels must lie in"),
     ("energy", (0.0,), "energy levels must lie in"), ("workers", 0, "workers must be >= 1")],
)  # fmt: skip
def test_search_config_names_the_bad_field(field, value, message):
    with pytest.raises(ValueError, match=f"SearchConfig.{message}"):
        SearchConfig(**{field: value})


def test_tolerances_absolute_and_relative():
    assert allowed_drop(0.02, 0.9) == 0.02
    assert allowed_drop({"relative": 0.05}, 0.8) == pytest.approx(0.04)
    excess, why = shortfall({"accuracy": 0.05, "agreement": 0.0}, {"accuracy": 0.02, "agreement": 0.01})
    assert excess == pytest.approx(0.03)
    assert why == ["accuracy dropped 0.0500 > tolerance 0.0200 (missed by 0.0300)"]
    assert shortfall({"accuracy": 0.01}, {"accuracy": 0.02}) == (0.0, [])


def test_pareto_front_over_size_quality_latency():
    pts = [
        {"size": 100, "q": 0.90, "ms": 1.0},  # on: best quality
        {"size": 50, "q": 0.89, "ms": 1.0},  # on: smaller
        {"size": 60, "q": 0.88, "ms": 1.2},  # off: dominated by the one before
        {"size": 200, "q": 0.85, "ms": 0.5},  # on: fastest
    ]
    assert front(pts, {"size": "min", "q": "max", "ms": "min"}) == [True, True, False, True]
    with pytest.raises(ValueError, match="objective 'q' must be 'min' or 'max'"):
        front(pts, {"q": "up"})  # type: ignore[dict-item]


def test_paired_bootstrap_sees_a_real_drop_and_not_noise():
    rng = np.random.default_rng(1)
    a = (rng.random(2000) < 0.90).astype(float)
    worse = a.copy()
    worse[np.flatnonzero(a)[:100]] = 0.0  # 100 of 2000 right answers turned wrong: -0.05
    iv = paired(lambda i: float(worse[i].mean()), lambda i: float(a[i].mean()), len(a), seed=0)
    assert iv.estimate == pytest.approx(-0.05) and iv.high < 0
    same = paired(lambda i: float(a[i].mean()), lambda i: float(a[i].mean()), len(a), seed=0)
    assert same.low == same.high == 0.0
    noisy = a.copy()
    noisy[np.flatnonzero(a == 1)[-20:]] = 0.0  # 20 right answers turned wrong, 20 wrong ones right:
    noisy[np.flatnonzero(a == 0)[-20:]] = 1.0  # the same accuracy, different examples
    iv = paired(lambda i: float(noisy[i].mean()), lambda i: float(a[i].mean()), len(a), seed=0)
    assert iv.low < 0 < iv.high


def test_latency_ratio_interval():
    rng = np.random.default_rng(0)
    fast = 1.0 + 0.02 * rng.standard_normal(9)
    slow = 1.5 * (1.0 + 0.02 * rng.standard_normal(9))
    iv = ratio_of_medians(slow, fast)
    assert 1.4 < iv.low <= iv.estimate <= iv.high < 1.6
    iv = ratio_of_medians(fast, 1.0 + 0.02 * rng.standard_normal(9))
    assert iv.low < 1.0 < iv.high
    with pytest.raises(ValueError, match="timings must be positive"):
        ratio_of_medians(np.array([1.0, -1.0]), fast)
