import pytest
import torch
from torch import nn

from model_compression.config import from_dict
from model_compression.prune.magnitude import MagnitudePruneConfig
from model_compression.registry import STEPS, TECHNIQUES, technique_config
from model_compression.score.weights import ScoreConfig, score


def test_score_rows_cover_weight_matrices_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 4))
    rows = score(model, ScoreConfig(min_numel=100))
    assert [r.name for r in rows] == ["0.weight", "1.weight"]
    assert rows[0].numel == 2048 and rows[0].shape == (32, 64)
    assert rows[0].as_row()["shape"] == "32x64"
    assert 4.0 < rows[0].entropy_bits < 8.0
    assert rows[0].sparsity == 0.0


def test_nan_weights_fail_scoring_with_the_layer_name():
    model = nn.Sequential(nn.Linear(64, 32))
    with torch.no_grad():
        model[0].weight[3, 3] = float("inf")
    with pytest.raises(ValueError, match=r"weight '0.weight' contains NaN or Inf"):
        score(model, ScoreConfig(min_numel=1))


def test_registry_builds_validated_configs():
    cfg = technique_config("prune", {"sparsity": 0.25, "skip": ["embeddings"]})
    assert cfg == MagnitudePruneConfig(sparsity=0.25, skip=("embeddings",))
    assert set(TECHNIQUES) == {"score", "prune", "quantize", "factorize"}


def test_registry_entries_are_strings_imported_on_use():
    # a registry that imported every technique would put every technique in every stage's code set
    for ref in [*TECHNIQUES.values(), *(r for s in STEPS.values() for r in (s.config, s.torch, s.onnx) if r)]:
        assert isinstance(ref, str) and ":" in ref
    assert STEPS["prune"].modules() == [
        "model_compression.prune.magnitude",
        "model_compression.prune.onnx_magnitude",
    ]


def test_unknown_technique_and_field_are_named():
    with pytest.raises(ValueError, match="unknown technique 'sparsify'"):
        technique_config("sparsify", {})
    with pytest.raises(ValueError, match=r"prune: unknown field\(s\) \['sparsty'\]"):
        technique_config("prune", {"sparsty": 0.5})
    with pytest.raises(ValueError, match="sparsity must be in"):
        from_dict(MagnitudePruneConfig, {"sparsity": 2.0})
