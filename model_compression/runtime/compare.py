"""Benchmark a set of ONNX files against their fp32 reference, on this machine.

The same function runs in the ``benchmark`` stage (this machine) and on every hardware
pool's worker, so numbers from different pools are made the same way: each file in a
fresh process (``isolated``), fixed threads, warm-up, repeated runs, inputs synthesised
from the model's declared inputs. Speed-ups are ratios to the reference file measured in
the same call, never absolute times compared across runs or machines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model_compression.quantize.onnx_int8 import count_quantized_nodes
from model_compression.quantize.presets import preset_for
from model_compression.runtime.fingerprint import fingerprint
from model_compression.runtime.isolated import declared_inputs, measure_isolated, synthetic_feeds

NOISY_SPREAD = 0.5  # (p95 - p50) / p50 above this marks a measurement as noisy


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
    """

    batch_sizes: tuple[int, ...] = (1,)
    seq_len: int = 128
    warmup: int = 10
    runs: int = 50
    threads: int = 1

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"BenchSettings.batch_sizes must be non-empty and >= 1, got {self.batch_sizes}")
        if self.runs < 1 or self.warmup < 0 or self.seq_len < 1 or self.threads < 1:
            raise ValueError(
                f"BenchSettings: runs, seq_len and threads must be >= 1 and warmup >= 0, got "
                f"runs={self.runs} seq_len={self.seq_len} threads={self.threads} warmup={self.warmup}"
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
    for name, path in files.items():
        per_batch = {}
        for bs in cfg.batch_sizes:
            feeds = synthetic_feeds(inputs, bs, cfg.seq_len)
            stats = measure_isolated(path, feeds, cfg.threads, cfg.warmup, cfg.runs)
            stats["noisy"] = stats["spread"] > NOISY_SPREAD
            per_batch[str(bs)] = stats
        out["results"][name] = per_batch
    ref = out["results"][reference]
    out["speedup_vs_fp32"] = {
        name: {bs: ref[bs]["p50_ms"] / r["p50_ms"] for bs, r in res.items()} for name, res in out["results"].items()
    }
    serving = str(cfg.batch_sizes[0])
    out["serving_batch"] = cfg.batch_sizes[0]
    out["int8_slower"] = sorted(
        name
        for name, path in files.items()
        if name != reference and count_quantized_nodes(path) > 0 and out["speedup_vs_fp32"][name][serving] < 1.0
    )
    return out
