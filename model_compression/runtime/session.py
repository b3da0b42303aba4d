"""onnxruntime sessions with pinned threads, and the latency benchmark.

On small machines onnxruntime's spin-waiting intra-op threads fight each other: with it
on, p50 of fp32 MiniLM on 2 cores read 65-173 ms; with it off, 23 ms. Every session made
here turns spinning off and pins intra- and inter-op thread counts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort


def make_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session on ``path`` with ``threads`` intra-op threads, one inter-op thread."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ValueError(f"cannot load ONNX model {path}: {e}") from e


def check_inputs(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> None:
    """Fail before any compute if ``feeds`` do not match the model's declared inputs."""
    declared = {i.name: i for i in session.get_inputs()}
    if set(declared) != set(feeds):
        raise ValueError(f"model inputs are {sorted(declared)}, eval spec gives {sorted(feeds)}")
    for name, arr in feeds.items():
        shape = declared[name].shape
        if len(shape) != arr.ndim or any(isinstance(d, int) and d != n for d, n in zip(shape, arr.shape, strict=True)):
            raise ValueError(f"input {name!r}: model expects shape {shape}, eval spec gives {list(arr.shape)}")


def run_batched(path: str | Path, name: str, x: np.ndarray, threads: int, batch_size: int) -> np.ndarray:
    """The first output of the ONNX model at ``path`` on input ``name`` = ``x``, run in
    batches of ``batch_size``; the first batch is checked against the declared inputs."""
    session = make_session(path, threads)
    check_inputs(session, {name: x[:batch_size]})
    return np.concatenate([session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)])


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one input batch, in milliseconds, over ``runs`` timed calls.

    ``spread`` is (p95 - p50) / p50; ``throughput`` is items per second at the p50.
    """

    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    spread: float
    throughput: float
    runs: int
    batch_size: int
    threads: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def measure_latency(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], warmup: int = 10, runs: int = 50, threads: int = 1
) -> LatencyStats:
    """Time ``runs`` calls of ``session.run`` on ``feeds`` after ``warmup`` untimed calls."""
    if warmup < 0 or runs < 1:
        raise ValueError(f"need warmup >= 0 and runs >= 1, got warmup={warmup} runs={runs}")
    check_inputs(session, feeds)
    for _ in range(warmup):
        session.run(None, feeds)
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times[i] = (time.perf_counter() - t0) * 1e3
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    batch = int(next(iter(feeds.values())).shape[0])
    return LatencyStats(
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=float(times.mean()),
        spread=float((p95 - p50) / p50),
        throughput=float(batch * 1e3 / p50),
        runs=runs,
        batch_size=batch,
        threads=threads,
    )
