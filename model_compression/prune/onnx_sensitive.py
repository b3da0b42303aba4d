"""Sensitivity-allocated magnitude pruning of an ONNX graph's weights (models that arrive
as ONNX only). Each prunable weight is pruned alone at each candidate sparsity and the
graph's output distortion on calibration probes is measured (1 - cosine to the unpruned
outputs); ``score.allocate`` then picks per-tensor sparsities that reach the overall
target with the least summed distortion. A fragile tensor, such as a depthwise kernel
whose every weight matters, keeps its weights instead of losing them to one global
threshold. Like every magnitude pruning it is storage-only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from model_compression.errors import NotApplicable
from model_compression.prune.magnitude import MagnitudePruneConfig
from model_compression.prune.onnx_magnitude import weight_initializers
from model_compression.prune.sensitive import SensitivePruneConfig
from model_compression.score.allocate import allocate

PROBE_SAMPLES = 32  # calibration samples the distortion is measured on


def _pruned(arr: np.ndarray, sparsity: float) -> np.ndarray:
    """``arr`` with its smallest-|w| ``sparsity`` set to zero (ties at the threshold too)."""
    k = int(sparsity * arr.size)
    if k == 0:
        return arr
    cut = np.partition(np.abs(arr).ravel(), k - 1)[k - 1]
    return np.where(np.abs(arr) <= cut, 0, arr).astype(arr.dtype)


def _outputs(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    outs = [np.asarray(session.run(None, f)[0], dtype=np.float64) for f in feeds]
    return np.concatenate([o.reshape(len(o), -1) for o in outs])


def _distortion(out: np.ndarray, ref: np.ndarray) -> float:
    """Mean 1 - cosine of per-sample outputs, >= 0."""
    norms = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
    return float(np.mean(1 - (out * ref).sum(1) / np.where(norms == 0, 1.0, norms)))


def _probe(feeds: list[dict[str, np.ndarray]], n: int) -> list[dict[str, np.ndarray]]:
    """The first ``n`` samples of ``feeds``, in batches as they come."""
    out, left = [], n
    for feed in feeds:
        if left <= 0:
            break
        batch = {k: v[:left] for k, v in feed.items()}
        out.append(batch)
        left -= len(next(iter(batch.values())))
    return out


def plan(src: Path, cfg: SensitivePruneConfig, feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """``{initializer: sparsity}`` reaching ``cfg.sparsity`` overall with the least distortion."""
    model = onnx.load(str(src))
    targets = weight_initializers(model, MagnitudePruneConfig(min_numel=cfg.min_numel, skip=cfg.skip))
    if not targets:
        raise NotApplicable(f"no prunable weights in {src.name}: none with >= {cfg.min_numel} elements")
    probe = _probe(feeds, PROBE_SAMPLES)
    reference = _outputs(model, probe)
    levels = sorted(set(cfg.levels))
    options: dict[str, dict[float, tuple[float, float]]] = {}
    for init in targets:
        original = numpy_helper.to_array(init)
        options[init.name] = {0.0: (0.0, float(original.size))} if 0.0 in levels else {}
        for level in (v for v in levels if v > 0):
            init.CopyFrom(numpy_helper.from_array(_pruned(original, level), init.name))
            options[init.name][level] = (_distortion(_outputs(model, probe), reference), original.size * (1 - level))
        init.CopyFrom(numpy_helper.from_array(original, init.name))
    total = sum(int(np.prod(i.dims)) for i in targets)
    return allocate(options, (1 - cfg.sparsity) * total)


def prune_sensitive(src: Path, dst: Path, cfg: SensitivePruneConfig, feeds: list[dict[str, np.ndarray]]) -> dict:
    """Prune the graph at ``src`` at its planned per-tensor sparsities into ``dst``."""
    chosen = plan(src, cfg, feeds)
    model = onnx.load(str(src))
    zeros = numel = 0
    for init in model.graph.initializer:
        if init.name in chosen:
            arr = _pruned(numpy_helper.to_array(init), chosen[init.name])
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
            zeros, numel = zeros + int((arr == 0).sum()), numel + arr.size
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return {"sparsity_by_layer": chosen, "sparsity": zeros / max(numel, 1), "tensors": len(chosen)}


def recipe_step(src: Path, dst: Path, cfg: SensitivePruneConfig, ctx: Any) -> dict[str, Any]:
    """Recipe step ``prune_sensitive`` on a graph with no torch model (``registry.STEPS``)."""
    return {**prune_sensitive(src, dst, cfg, ctx.calibration()), "on": "onnx graph"}
