"""Stage ``benchmark``: onnxruntime latency of every artifact on this machine (the inline pool).

The body is ``runtime.compare.benchmark_files``, the same function every remote pool's
worker runs: each artifact in a fresh process (so peak RSS and load time are its own),
warm-up, pinned intra-op threads (params ``threads``), spin-waiting off, repeated runs;
p50/p95/p99, throughput, spread and a noisy flag per batch size, plus the hardware
fingerprint. Speed-ups are fp32 p50 over the artifact's p50 in the same run; an int8
artifact slower than fp32 at the serving batch (the first batch size) is listed in
``int8_slower`` and not published for this pool.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from model_compression.config import from_dict
from model_compression.runtime.compare import BenchSettings, benchmark_files
from tasks.core.project import ARTIFACT_STAGES, Project
from tasks.core.stage import Stage, write_json
from tasks.pools import local_pool
from tasks.present.console import summarize

log = logging.getLogger("pipeline")


def bench_settings(project: Project, model: str) -> BenchSettings:
    """The model's ``bench`` section of params, validated, with params ``threads``."""
    where = f"{model}.bench"
    raw = dict(project.section(model, "bench") or {})
    if "threads" in raw:
        raise ValueError(f"{where}: unknown field(s) ['threads']; threads come from params.yaml threads")
    try:
        return from_dict(BenchSettings, {**raw, "threads": project.threads}, where)
    except ValueError as e:
        if str(e).startswith(where):  # from_dict names the field itself
            raise
        raise ValueError(f"{where}: {e}") from e  # BenchSettings' own range checks


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    files = project.artifacts(model)
    bench = benchmark_files(files, bench_settings(project, model))
    bench["pool"] = local_pool(project).name
    summarize(model, bench["pool"], bench)
    write_json(out / "bench.json", bench)
    serving = str(bench["serving_batch"])
    return {
        "p50_ms": {s: r[serving]["p50_ms"] for s, r in bench["results"].items()},
        "batch_size": bench["serving_batch"],
        "int8_slower": bench["int8_slower"],
    }


STAGE = Stage(
    name="benchmark",
    body=_body,
    inputs=lambda p, m: {s: p.stage_dir(m, s) for s in ARTIFACT_STAGES},
    params=lambda p, m: ["threads", "pools", "model.kind", "model.bench", "model.recipe"],
)
