"""Stage ``score``: per-layer magnitude statistics and entropy of the fp32 weights.

Writes ``score.json`` (per tensor: magnitudes, sparsity, entropy in bits per weight at
``score.bits``) and, for torch models, ``structure.json``: the L1 score of every conv
channel, hidden neuron, attention head and FFN neuron, what structured pruning removes
first. A model with only an ONNX graph is scored on its initializers.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from model_compression.config import from_dict
from model_compression.info.entropy import entropy_bound
from model_compression.info.onnx_weights import onnx_layer_stats
from model_compression.score.structure import structure_scores
from model_compression.score.weights import ScoreConfig
from model_compression.score.weights import score as score_weights
from tasks.core.project import Project
from tasks.core.skip import skippable
from tasks.core.stage import Stage, write_json


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    cfg = from_dict(ScoreConfig, project.section(model, "score") or {}, f"{model}.score")
    fp32 = project.kind(model).load(project, model)
    if fp32 is None:  # an ONNX-only model: score its initializers
        stats = onnx_layer_stats(project.artifact(model, "baseline"), cfg.bits, cfg.min_numel)
        write_json(out / "score.json", [dataclasses.asdict(t) for t in stats])
        numel = sum(t.numel for t in stats)
        bits = sum(t.numel * t.entropy_bits for t in stats)
        return {
            "layers": len(stats),
            "numel": numel,
            "entropy_bits_per_weight": bits / max(numel, 1),
            "entropy_bound_bytes": math.ceil(bits / 8),
            "raw_bytes_at_bits": numel * cfg.bits // 8,
        }
    rows = score_weights(fp32, cfg)
    write_json(out / "score.json", [r.as_row() for r in rows])
    structure = structure_scores(fp32)  # per channel / head / FFN neuron
    write_json(out / "structure.json", structure)
    names = {r.name for r in rows}
    bound = entropy_bound([p.detach() for n, p in fp32.named_parameters() if n in names], cfg.bits)
    return {
        "layers": len(rows),
        "numel": bound.numel,
        "entropy_bits_per_weight": bound.entropy_bits / max(bound.numel, 1),
        "entropy_bound_bytes": bound.entropy_bytes,
        "raw_bytes_at_bits": bound.raw_bits // 8,
        "structure_groups": len(structure),
    }


STAGE = Stage(
    name="score",
    body=skippable(_body, "score"),
    inputs=lambda p, m: {"baseline": p.stage_dir(m, "baseline")},
    params=lambda p, m: ["seed", "threads", "model.kind", "model.score"],
    uses=lambda p, m: ["load"],
)
