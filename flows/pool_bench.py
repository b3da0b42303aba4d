"""Benchmarks on hardware pools.

``benchmark-onnx`` is the flow a pool's worker runs: benchmark staged ONNX files on that
machine. It is deployed once per pool as ``benchmark-onnx/<pool>`` (prefect.yaml), and
called with ``run_deployment`` (flows/dispatch.py). Its parameters are references to
files on S3, the measurement settings and where to write the result; no hyperparameters.

``benchmark-on-pools`` is the caller's side for any ONNX files: dispatch them to each
pool and gather the results (the nightly flow does the same per model, through
``flows/pool_serve.py``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows import dispatch

dispatch_to_pool = task(dispatch.dispatch_files, name="dispatch", task_run_name="benchmark-on[{pool}]")
bench_on_this_machine = task(
    dispatch.run_on_worker,
    name="bench-on-worker",
    task_run_name="benchmark {result_key}",
    # No task retries: the S3 transfers inside retry themselves (tasks/s3.py), and timing
    # again after a failure would only repeat it.
)


@flow(name="benchmark-onnx", log_prints=True)
def benchmark_onnx(
    artifacts: list[dict[str, str]], settings: dict[str, Any], s3: dict[str, Any], result_key: str
) -> dict[str, Any]:
    """Download ``artifacts`` (name, key, sha256) from S3, verify, benchmark, and write the
    result with this machine's fingerprint to ``_staging/results/<result_key>.json``."""
    with tempfile.TemporaryDirectory(prefix="pool-bench-") as tmp:
        result: dict[str, Any] = bench_on_this_machine(artifacts, settings, s3, result_key, Path(tmp))
    return {"fingerprint": result["fingerprint"], "preset": result["preset"], "files": sorted(result["results"])}


@flow(name="benchmark-on-pools", log_prints=True)
def benchmark_on_pools(
    files: dict[str, str], pools: list[str], root: str = ".", settings: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Benchmark ONNX ``files`` (name -> path, including the fp32 ``baseline``) on each of
    ``pools``; a pool that cannot run reports ``not benchmarked`` and the others go on."""
    futures = {p: dispatch_to_pool.submit(files, p, root, settings) for p in pools}
    return {p: f.result() for p, f in futures.items()}
