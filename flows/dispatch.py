"""Benchmark on a remote hardware pool through Prefect: stage, dispatch, wait, gather.

The pipeline machine uploads each ONNX file once to S3, content-addressed
(``_staging/sha256/<sha>.onnx`` in the publish bucket), then calls ``run_deployment`` on
the pool's ``benchmark-onnx/<pool>`` deployment. A worker on that hardware downloads the
files, checks their sha256, runs ``runtime.compare.benchmark_files`` and writes its result,
fingerprint included, to ``_staging/results/<key>.json``, which the caller reads back.
S3 carries the files both ways because the worker's disk and result storage are not
the caller's.

A pool never hangs a run: a missing work pool or deployment, or no live worker, is
reported at once; a run that has not finished within the pool's ``timeout_s`` is
cancelled and reported. Either way the pool is "not benchmarked" with the reason, and
the run goes on with the other pools.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from pathlib import Path
from typing import Any

from model_compression.config import from_dict
from model_compression.hashing import sha256_file
from model_compression.runtime.compare import BenchSettings, benchmark_files
from tasks.core.project import Project
from tasks.pools import PoolSpec, pools
from tasks.storage import s3 as s3io

log = logging.getLogger("pipeline")
STAGING = "_staging"


def not_benchmarked(pool: str, reason: str) -> dict[str, Any]:
    log.warning("pool %s: not benchmarked: %s", pool, reason)
    return {"pool": pool, "status": "not benchmarked", "reason": reason}


def stage_files(project: Project, files: dict[str, Path]) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Upload ``files`` content-addressed; returns (refs, the S3 settings a worker needs)."""
    refs = []
    with s3io.available(project) as (s3, settings):
        for name, path in files.items():
            sha = sha256_file(path)
            key = f"{STAGING}/sha256/{sha}.onnx"
            if s3io.get_head(s3, settings, settings.publish_bucket, key) is None:
                s3io.upload_file(s3, settings, path, settings.publish_bucket, key)
            refs.append({"name": name, "key": key, "sha256": sha})
    # Endpoint, region and bucket only: credentials stay in each side's own environment.
    return refs, dataclasses.asdict(settings)


def run_on_worker(
    refs: list[dict[str, str]], settings: dict[str, Any], s3: dict[str, Any], result_key: str, work_dir: Path
) -> dict[str, Any]:
    """The worker's side (body of the ``benchmark-onnx`` flow): fetch, verify, benchmark,
    write the result to S3. With no refs it is a probe: fingerprint and preset only."""
    cfg = from_dict(BenchSettings, settings, "benchmark settings")
    s3_settings = s3io.S3Settings(**s3)
    client = s3io.client(s3_settings)
    files = {}
    for ref in refs:
        path = work_dir / f"{ref['sha256']}.onnx"  # work_dir is fresh per run: always download
        s3io.download_file(client, s3_settings, s3_settings.publish_bucket, ref["key"], path)
        if sha256_file(path) != ref["sha256"]:
            raise ValueError(f"{ref['name']}: downloaded file does not match sha256 {ref['sha256'][:12]}")
        files[ref["name"]] = path
    result = benchmark_files(files, cfg)
    body = json.dumps(result, indent=2, sort_keys=True).encode()
    s3io.put_bytes(client, s3_settings, s3_settings.publish_bucket, f"{STAGING}/results/{result_key}.json", body)
    return result


def unavailable(work_pool: str, deployment: str) -> str | None:
    """None when ``deployment`` is deployed and ``work_pool`` has an online worker, else
    the reason a run there cannot start, with its fix."""
    why = why_unavailable(work_pool, deployment)
    return None if why is None else f"{why[0]} ({why[1]})"


def why_unavailable(work_pool: str, deployment: str) -> tuple[str, str] | None:
    """None when ``deployment`` is deployed and ``work_pool`` has an online worker, else
    (the reason a run there cannot start, the command that fixes it)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import WorkerStatus
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(work_pool)
        except ObjectNotFound:
            return (
                f"work pool {work_pool!r} does not exist on the Prefect server",
                f"prefect work-pool create --type process {work_pool}",
            )
        name = deployment.split("/", 1)[-1]
        try:
            deployed = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return f"deployment {deployment!r} is not deployed", f"prefect --no-prompt deploy --name {name}"
        if deployed.work_pool_name != work_pool:
            return (
                f"deployment {deployment!r} runs on work pool {deployed.work_pool_name!r}, not {work_pool!r}",
                f"prefect --no-prompt deploy --name {name} --pool {work_pool}",
            )
        workers = client.read_workers_for_work_pool(work_pool)
    if not any(w.status == WorkerStatus.ONLINE for w in workers):
        return (
            f"work pool {work_pool!r} has no live worker",
            f"start one there: prefect worker start --pool {work_pool}",
        )
    return None


def dispatch(project: Project, spec: PoolSpec, files: dict[str, Path], settings: BenchSettings) -> dict[str, Any]:
    """Benchmark ``files`` on pool ``spec``; returns the worker's result with
    ``status: benchmarked``, or ``status: not benchmarked`` and a ``reason``."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelled

    if spec.inline:
        raise ValueError(f"pool {spec.name!r} is this machine: it is benchmarked by the benchmark stage")
    assert spec.work_pool is not None  # a remote pool has one (tasks/pools.py)
    reason = unavailable(spec.work_pool, spec.deployment_name)
    if reason:
        return not_benchmarked(spec.name, reason)
    refs, s3 = stage_files(project, files)
    result_key = uuid.uuid4().hex
    params = {"artifacts": refs, "settings": settings.as_dict(), "s3": s3, "result_key": result_key}
    run = run_deployment(
        spec.deployment_name,
        parameters=params,
        timeout=spec.timeout_s,
        poll_interval=1,
        tags=[f"pool:{spec.name}"],
        flow_run_name=f"benchmark-{spec.name}-{len(refs)}-files",
    )
    state = run.state
    if state is None or not state.is_completed():
        name = state.name if state else "unknown"
        if state is not None and not state.is_final():
            with get_client(sync_client=True) as client:  # so it does not run later, unobserved
                client.set_flow_run_state(run.id, Cancelled(message=f"timed out after {spec.timeout_s:g} s"))
            return not_benchmarked(spec.name, f"timed out after {spec.timeout_s:g} s (run {run.id} was {name})")
        return not_benchmarked(spec.name, f"benchmark run {run.id} ended {name}: {state.message if state else ''}")
    with s3io.available(project) as (client, s3_settings):
        raw = s3io.get_bytes(client, s3_settings, s3_settings.publish_bucket, f"{STAGING}/results/{result_key}.json")
    if raw is None:
        return not_benchmarked(spec.name, f"benchmark run {run.id} completed but wrote no result")
    result: dict[str, Any] = json.loads(raw)
    log.info("pool %s: benchmarked %d files on %s (%s)", spec.name, len(refs), result["fingerprint"]["cpu"], run.id)
    return {**result, "pool": spec.name, "status": "benchmarked", "flow_run_id": str(run.id)}


def dispatch_files(files: dict[str, str], pool: str, root: str = ".", settings: dict[str, Any] | None = None) -> dict:
    """``dispatch`` by names: ONNX ``files`` (name -> path, with the fp32 ``baseline``)
    to the pool called ``pool`` in ``root``'s params, measured with ``settings``
    (``BenchSettings`` fields; threads default to params ``threads``)."""
    project = Project.at(root)
    spec = pools(project).get(pool)
    if spec is None:
        raise ValueError(f"unknown pool {pool!r}; params.yaml pools: {sorted(pools(project))}")
    cfg = from_dict(BenchSettings, {"threads": project.threads, **(settings or {})}, "benchmark settings")
    return dispatch(project, spec, {k: Path(v) for k, v in files.items()}, cfg)
