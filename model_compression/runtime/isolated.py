"""Latency, load time and peak memory of one ONNX model, measured in a fresh process.

Peak RSS is a per-process high-water mark, so it only describes the model when the
process did nothing else: the parent (holding torch, the other artifacts, ...) would
report its own peak. Each artifact therefore runs in a child interpreter that imports
onnxruntime, records its RSS, loads the model (timed: ``load_ms``), benchmarks it with
``session.measure_latency`` and reports ``peak_rss_mb`` (the child's peak) and
``model_rss_mb`` (peak minus the RSS before loading: what the model itself costs).

Run directly: ``python -m model_compression.runtime.isolated MODEL.onnx FEEDS.npz
--threads 2 --warmup 10 --runs 50`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc/self/statm``)."""
    import os

    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """This process's peak RSS in MiB: ``VmHWM``, which execve resets. (``ru_maxrss``
    would not do: Linux carries it over from the parent across fork and exec, so a child
    of a 1 GiB flow process would report 1 GiB for any model.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise OSError("no VmHWM in /proc/self/status")


def measure_in_process(model: Path, feeds: dict[str, np.ndarray], threads: int, warmup: int, runs: int) -> dict:
    """Load ``model`` and time it here; only meaningful in a process doing nothing else."""
    from model_compression.runtime.session import make_session, measure_latency

    before = _rss_mb()
    t0 = time.perf_counter()
    session = make_session(model, threads)
    load_ms = (time.perf_counter() - t0) * 1e3
    stats = measure_latency(session, feeds, warmup, runs, threads).as_dict()
    peak = _peak_rss_mb()
    return {**stats, "load_ms": load_ms, "peak_rss_mb": peak, "model_rss_mb": max(peak - before, 0.0)}


def measure_isolated(
    model: str | Path, feeds: dict[str, np.ndarray], threads: int = 1, warmup: int = 10, runs: int = 50
) -> dict[str, Any]:
    """``measure_in_process`` in a child interpreter; returns its JSON result.

    Raises ``ValueError`` with the child's last error line if the model cannot be loaded
    or run (a corrupt file, inputs that do not match).
    """
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        npz = Path(tmp) / "feeds.npz"
        np.savez(npz, **feeds)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds
        cmd = [sys.executable, "-m", __name__, str(model), str(npz)]
        cmd += ["--threads", str(threads), "--warmup", str(warmup), "--runs", str(runs)]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"benchmark of {model} failed: {last}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def synthetic_feeds(
    inputs: list[tuple[str, list[Any], str]], batch_size: int, seq_len: int = 128, seed: int = 0
) -> dict[str, np.ndarray]:
    """Inputs for a latency run, built from a model's declared ``(name, shape, type)``.

    The first dynamic dimension is the batch, any other dynamic one is ``seq_len``. Names
    containing ``mask`` get ones, ``type_ids`` zeros, other integer inputs token ids in
    [1000, 30000); float inputs are standard normal. Timing does not depend on the values
    for these models, only on shapes and dtypes.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape, onnx_type in inputs:
        dims = [d if isinstance(d, int) and d > 0 else (batch_size if i == 0 else seq_len) for i, d in enumerate(shape)]
        if "int" in onnx_type:
            itype = np.int32 if "int32" in onnx_type else np.int64
            if "mask" in name:
                feeds[name] = np.ones(dims, dtype=itype)
            elif "type_ids" in name:
                feeds[name] = np.zeros(dims, dtype=itype)
            else:
                feeds[name] = rng.integers(1000, 30000, size=dims).astype(itype)
        else:
            ftype = np.float16 if "float16" in onnx_type else np.float32
            feeds[name] = rng.standard_normal(dims).astype(ftype)
    return feeds


def declared_inputs(model: str | Path) -> list[tuple[str, list[Any], str]]:
    """``(name, shape, type)`` of each graph input, read without starting a session."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    out = []
    for inp in graph.input:
        if inp.name in inits:
            continue
        t = inp.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
        out.append((inp.name, shape, onnx.TensorProto.DataType.Name(t.elem_type).lower()))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("feeds", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runs", type=int, default=50)
    a = ap.parse_args(argv)
    with np.load(a.feeds) as z:
        feeds = {k: z[k] for k in z.files}
    print(json.dumps(measure_in_process(a.model, feeds, a.threads, a.warmup, a.runs)))


if __name__ == "__main__":
    main()
