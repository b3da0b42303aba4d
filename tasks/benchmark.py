"""Stage ``benchmark``: onnxruntime latency of every artifact on this machine.

Warm-up, pinned intra-op threads (params ``threads``), spin-waiting off, repeated runs;
p50/p95/p99, throughput and spread per batch size, plus the hardware fingerprint. The
speed-up of each artifact is its fp32 p50 over its own p50, measured in the same run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from model_compression.kinds import image_classifier, text_encoder
from model_compression.runtime.fingerprint import fingerprint
from model_compression.runtime.session import make_session, measure_latency
from tasks.project import ARTIFACT_STAGES, Project
from tasks.stage import Stage, write_json

log = logging.getLogger("pipeline")
NOISY_SPREAD = 0.5  # (p95 - p50) / p50 above this marks a measurement as noisy


def bench_settings(project: Project, model: str) -> dict[str, Any]:
    b = {"batch_sizes": [1], "seq_len": 128, "warmup": 10, "runs": 50, **(project.entry(model).get("bench") or {})}
    if not b["batch_sizes"] or min(b["batch_sizes"]) < 1 or b["runs"] < 1 or b["warmup"] < 0 or b["seq_len"] < 1:
        raise ValueError(f"{model}.bench: batch sizes, runs and seq_len must be >= 1, warmup >= 0; got {b}")
    return b


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    b = bench_settings(project, model)
    results: dict[str, dict[str, Any]] = {}
    for stage in ARTIFACT_STAGES:
        session = make_session(project.artifact(model, stage), project.threads)
        per_batch = {}
        for bs in b["batch_sizes"]:
            if project.kind(model) == "text-encoder":
                feeds = text_encoder.bench_feeds(bs, b["seq_len"])
            else:
                feeds = image_classifier.bench_feeds(bs)
            stats = measure_latency(session, feeds, b["warmup"], b["runs"], project.threads).as_dict()
            stats["noisy"] = stats["spread"] > NOISY_SPREAD
            per_batch[str(bs)] = stats
        results[stage] = per_batch
        log.info(
            "%s/%s: p50 %.2f ms (batch %s)",
            model,
            stage,
            per_batch[str(b["batch_sizes"][0])]["p50_ms"],
            b["batch_sizes"][0],
        )
    first = str(b["batch_sizes"][0])
    base_p50 = results["baseline"][first]["p50_ms"]
    speedup = {s: base_p50 / r[first]["p50_ms"] for s, r in results.items()}
    write_json(
        out / "bench.json",
        {"settings": b, "results": results, "speedup_vs_fp32": speedup, "fingerprint": fingerprint()},
    )
    return {"p50_ms": {s: r[first]["p50_ms"] for s, r in results.items()}, "batch_size": int(first)}


BENCHMARK = Stage(
    name="benchmark",
    version=1,
    inputs=lambda p, m: {s: p.artifact(m, s) for s in ARTIFACT_STAGES},
    params=lambda p, m: {"bench": p.entry(m).get("bench"), "threads": p.threads},
    body=_body,
)


def benchmark(model: str, root: str = ".") -> dict[str, Any]:
    """Latency of every artifact of ``model`` on this machine; writes ``bench.json``."""
    return BENCHMARK.run(model, root)
