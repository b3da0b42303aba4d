"""Stage ``package``: the entropy-coded transfer package of every artifact, beside its bound.

Each ``model.onnx`` is packed with ``model_compression.info.package`` (8-bit symbols for
float weights, integer and weight-shared tensors exactly, ANS-coded per tensor), decoded
again and compared with what was encoded before the stage counts as done.
``package.json`` gives, per artifact, the package size, its coded part against the
entropy bound, the transfer ratio against the fp32 ONNX file, and whether the package is
exact. An inexact one (float weights at 8 bits) decodes to a model of its own: the
validate stage evaluates it, and its ratio is only ever shown beside that quality.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from model_compression.info.package import pack, verify
from tasks.core.project import ARTIFACT_STAGES, Project
from tasks.core.stage import Stage, write_json

log = logging.getLogger("pipeline")
BITS, MIN_NUMEL = 8, 1024  # the precision and tensor floor of the report's entropy bound


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    files = project.artifacts(model)
    fp32_bytes = os.path.getsize(files["baseline"])
    table = {}
    for name, path in files.items():
        dst = out / f"{name}.mcpk"
        stats = pack(path, dst, BITS, MIN_NUMEL)
        verify(path, dst, BITS)  # decodes to exactly the encoded symbols, or the stage fails
        table[name] = {
            "package_bytes": stats.bytes,
            "coded_bytes": stats.coded_bytes,
            "entropy_bound_bytes": stats.entropy_bound_bytes,
            "coded_vs_bound": round(stats.coded_vs_bound, 5),
            "transfer_ratio_vs_fp32_onnx": round(fp32_bytes / stats.bytes, 3),
            "tensors": stats.tensors,
            "numel": stats.numel,
            # float weights coded at BITS bits: the package decodes to another model, which
            # the validate stage evaluates before any ratio of it is reported or published
            "exact": stats.exact,
        }
        log.info(
            "%s/%s: package %s bytes (%.1fx smaller than fp32 ONNX), coded part %.4f x entropy bound",
            model, name, f"{stats.bytes:,}", fp32_bytes / stats.bytes, stats.coded_vs_bound,
        )  # fmt: skip
    write_json(out / "package.json", table)
    return {name: row["package_bytes"] for name, row in table.items()}


STAGE = Stage(
    name="package",
    body=_body,
    inputs=lambda p, m: {s: p.stage_dir(m, s) for s in ARTIFACT_STAGES},
    params=lambda p, m: ["model.recipe"],  # which recipe artifacts there are, by name
)
