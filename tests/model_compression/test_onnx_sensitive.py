"""Sensitivity-allocated pruning of an ONNX graph: a fragile layer with small weights keeps
them, where one global magnitude threshold wipes it out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from model_compression import onnx_export
from model_compression.errors import NotApplicable
from model_compression.prune.magnitude import MagnitudePruneConfig
from model_compression.prune.onnx_magnitude import prune_onnx
from model_compression.prune.onnx_sensitive import prune_sensitive
from model_compression.prune.sensitive import SensitivePruneConfig
from model_compression.runtime.session import make_session


@pytest.fixture
def fragile(tmp_path: Path) -> Path:
    """Three linear layers; the middle one's weights are scaled down 100x and the next one's
    up 100x: the same function, but its weights look negligible to a global threshold."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    with torch.no_grad():
        model[2].weight /= 100
        model[2].bias /= 100
        model[4].weight *= 100
    return onnx_export.export(
        model, {"x": torch.zeros(2, 64)}, tmp_path / "m.onnx", "y", {"x": {0: "b"}, "y": {0: "b"}}
    )


def _feeds() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((16, 64)).astype(np.float32)} for _ in range(2)]


def _cosine(a: Path, b: Path) -> float:
    x = _feeds()[0]
    ya, yb = make_session(a).run(None, x)[0], make_session(b).run(None, x)[0]
    return float(((ya * yb).sum(1) / (np.linalg.norm(ya, axis=1) * np.linalg.norm(yb, axis=1))).mean())


def _zeros(path: Path) -> dict[str, float]:
    inits = onnx.load(str(path)).graph.initializer
    return {i.name: float((numpy_helper.to_array(i) == 0).mean()) for i in inits if len(i.dims) == 2}


def test_sensitivity_beats_one_global_threshold_at_the_same_sparsity(fragile: Path, tmp_path: Path):
    prune_onnx(fragile, tmp_path / "global.onnx", MagnitudePruneConfig(sparsity=0.5, scope="global", min_numel=1000))
    levels = tuple(round(0.05 * i, 2) for i in range(20))
    cfg = SensitivePruneConfig(sparsity=0.5, levels=levels, min_numel=1000)
    info = prune_sensitive(fragile, tmp_path / "sens.onnx", cfg, _feeds())
    wiped, kept = _zeros(tmp_path / "global.onnx"), _zeros(tmp_path / "sens.onnx")
    middle = max(wiped, key=wiped.get)  # the small-weight layer a global threshold strips most
    assert wiped[middle] > 0.6 and kept[middle] < wiped[middle]
    assert 0.5 <= info["sparsity"] < 0.6 and set(info["sparsity_by_layer"]) == set(kept)  # at least the target
    assert _cosine(fragile, tmp_path / "sens.onnx") > _cosine(fragile, tmp_path / "global.onnx") + 0.02


def test_a_graph_with_nothing_large_enough_to_prune_is_not_applicable(fragile: Path, tmp_path: Path):
    with pytest.raises(NotApplicable, match=r"no prunable weights in m.onnx: none with >= 1000000 elements"):
        prune_sensitive(fragile, tmp_path / "x.onnx", SensitivePruneConfig(sparsity=0.5, min_numel=10**6), _feeds())
