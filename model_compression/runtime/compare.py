"""Benchmark a set of ONNX files against their fp32 reference, on this machine.

The same function runs in the ``benchmark`` stage (this machine) and on every hardware
pool's worker, so numbers from different pools are made the same way: each file in a
fresh process (``isolated``), fixed threads, warm-up, repeated runs, inputs synthesised
from the model's declared inputs.

Rounds: on a shared 2-core VM one process's p50 can be 50% off the next one's (measured
with ``bench/repeatability.py``), and measuring fp32 first and the others after turns
such a blip into a wrong speed-up. So every file is measured once per round, the rounds
interleave the files, the reported stats are those of the median round, and the
speed-up is the median over rounds of the ratio *within* each round. Never absolute
times compared across runs or machines.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model_compression.quantize.onnx_int8 import count_quantized_nodes
from model_compression.quantize.presets import preset_for
from model_compression.runtime.fingerprint import fingerprint
from model_compression.runtime.isolated import declared_inputs, measure_isolated, synthetic_feeds

NOISY_SPREAD = 0.5  # (p95 - p50) / p50 within a round above this marks a measurement noisy
NOISY_ROUNDS = 0.2  # (max - min) / median of the rounds' p50 above this marks it noisy too


@dataclass(frozen=True)
class BenchSettings:
    """How to measure.

    Attributes:
        batch_sizes: batch sizes to time; the first is the serving batch that decides
            whether an int8 artifact is slower than fp32 (default ``(1,)``).
        seq_len: length of every dynamic non-batch dimension, in tokens (default 128).
        warmup: untimed calls before timing (default 10).
        runs: timed calls per batch size (default 50).
        threads: onnxruntime intra-op threads (default 1); inter-op is always 1.
        rounds: interleaved repetitions of the whole set (default 3; the median counts).
    """

    batch_sizes: tuple[int, ...] = (1,)
    seq_len: int = 128
    warmup: int = 10
    runs: int = 50
    threads: int = 1
    rounds: int = 3

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"BenchSettings.batch_sizes must be non-empty and >= 1, got {self.batch_sizes}")
        if min(self.runs, self.seq_len, self.threads, self.rounds) < 1 or self.warmup < 0:
            raise ValueError(
                f"BenchSettings: runs, seq_len, threads and rounds must be >= 1 and warmup >= 0, got "
                f"runs={self.runs} seq_len={self.seq_len} threads={self.threads} rounds={self.rounds} "
                f"warmup={self.warmup}"
            )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        return d


def benchmark_files(files: Mapping[str, str | Path], cfg: BenchSettings, reference: str = "baseline") -> dict[str, Any]:
    """Time every file in ``files`` (name -> ONNX path) on this machine.

    Returns a JSON-ready dict: ``results[name][batch]`` (p50/p95/p99 ms, throughput,
    spread, ``noisy``, ``load_ms``, ``peak_rss_mb``, ``model_rss_mb``),
    ``speedup_vs_fp32[name][batch]`` (reference p50 / own p50), ``int8_slower`` (the
    quantized files whose serving-batch speed-up is below 1), the machine's
    ``fingerprint`` and the int8 ``preset`` it calls for. With no files, only the
    fingerprint and preset: a probe.
    """
    fp = fingerprint()
    out: dict[str, Any] = {"settings": cfg.as_dict(), "fingerprint": fp, "preset": preset_for(fp), "results": {}}
    if not files:
        return out
    if reference not in files:
        raise ValueError(f"benchmark needs the fp32 reference {reference!r} among {sorted(files)}")
    inputs = declared_inputs(files[reference])
    feeds = {bs: synthetic_feeds(inputs, bs, cfg.seq_len) for bs in cfg.batch_sizes}
    rounds: dict[str, dict[int, list[dict[str, Any]]]] = {n: {bs: [] for bs in cfg.batch_sizes} for n in files}
    for _ in range(cfg.rounds):
        for name, path in files.items():  # interleaved: a slow moment hits one round of all files
            for bs in cfg.batch_sizes:
                rounds[name][bs].append(measure_isolated(path, feeds[bs], cfg.threads, cfg.warmup, cfg.runs))
    out["speedup_vs_fp32"] = {}
    for name, by_batch in rounds.items():
        out["results"][name], out["speedup_vs_fp32"][name] = {}, {}
        for bs, stats in by_batch.items():
            p50s = [r["p50_ms"] for r in stats]
            median = dict(sorted(stats, key=lambda r: r["p50_ms"])[len(stats) // 2])
            median["p50_rounds"] = p50s
            median["round_spread"] = (max(p50s) - min(p50s)) / statistics.median(p50s)
            median["noisy"] = median["spread"] > NOISY_SPREAD or median["round_spread"] > NOISY_ROUNDS
            out["results"][name][str(bs)] = median
            ref = rounds[reference][bs]
            ratios = [ref[i]["p50_ms"] / stats[i]["p50_ms"] for i in range(cfg.rounds)]
            out["speedup_vs_fp32"][name][str(bs)] = statistics.median(ratios)
    serving = str(cfg.batch_sizes[0])
    out["serving_batch"] = cfg.batch_sizes[0]
    out["int8_slower"] = sorted(
        name
        for name, path in files.items()
        if name != reference and count_quantized_nodes(path) > 0 and out["speedup_vs_fp32"][name][serving] < 1.0
    )
    return out
