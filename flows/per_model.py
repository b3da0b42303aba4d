"""One flow run per model: a nightly's models spread over the workers of a work pool.

``nightly(..., dispatch=True)`` (``flows.cli run --dispatch``) starts one run of the
``compress-model`` deployment per model with ``run_deployment`` and does not wait for
each in turn: any worker of the work pool in params.yaml ``dispatch.work_pool``, on any
machine, picks a run up and builds the model in its own checkout (prefect.yaml's pull
step: ``$PIPELINE_ROOT``), pushing every stage output to the S3 stage cache
(``tasks/storage/stage_cache.py``). The machines share the Prefect server and S3, nothing
else.

The parent never hangs: a missing pool or deployment or no live worker is reported
before anything starts, and a run still unfinished ``dispatch.timeout_s`` after dispatch
is cancelled. Failed and timed-out models are reported by name. Each model is
materialised here as soon as its run completes, while the others still build: its stages
run through the stage cache, so every output is fetched (and verified), not built, and
this checkout's ``data/`` and ``dvc.lock`` record the run. (Fetching them all after the
last run finished added the whole fetch time to the batch's wall time.)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import flow

from flows import cancel
from flows.prefect_tasks import compress_model
from tasks.core.pipeline import order, stage
from tasks.core.project import Project
from tasks.pools import remote_targets
from tasks.storage import s3 as s3io
from tasks.storage import stage_cache

log = logging.getLogger("pipeline")
DEPLOYMENT = "compress-model/compress-model"  # flow name / deployment name (prefect.yaml)
POLL_S = 2.0
PAGE = 200  # the most flow runs one filter call returns (the server's default limit)


@dataclass(frozen=True)
class DispatchConfig:
    """params.yaml ``dispatch``. work_pool: where the ``compress-model`` deployment runs
    (default local-process); timeout_s: how long a model's run may take from dispatch,
    queueing included, before it is cancelled (default 3600)."""

    work_pool: str = "local-process"
    timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"dispatch.timeout_s must be > 0, got {self.timeout_s}")


def config(project: Project) -> DispatchConfig:
    from model_compression.config import from_dict

    return from_dict(DispatchConfig, project.params.get("dispatch") or {}, "dispatch")


@flow(name="compress-model", log_prints=True)
def compress_one(model: str, publish: bool = True, on_busy: str = "wait", root: str | None = None) -> dict[str, Any]:
    """One model's chain in this worker's checkout (the ``compress-model`` deployment):
    ``root``, else the worker's ``PIPELINE_ROOT``, else the working directory."""
    root = root or os.environ.get("PIPELINE_ROOT") or "."
    project = Project.at(root)
    project.check(model)
    remote = remote_targets(project)
    with cancel.handling(), s3io.available(project):
        result: dict[str, Any] = compress_model(model, root, remote, publish, on_busy)
    return result


def dispatch(models: list[str], root: str, publish: bool, on_busy: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Run ``models`` as ``compress-model`` flow runs on the dispatch work pool, then
    materialise those that finished here; returns (their stage records, {model: why it failed})."""
    from prefect.deployments import run_deployment

    from flows.dispatch import unavailable

    project = Project.at(root)
    cfg = config(project)
    if stage_cache.settings_if_on(project) is None:
        raise ValueError("dispatch needs the S3 stage cache: set s3.cache_bucket in params.yaml")
    reason = unavailable(cfg.work_pool, DEPLOYMENT)
    if reason:
        raise RuntimeError(f"cannot dispatch {', '.join(models)}: {reason}")
    runs = {
        m: run_deployment(
            DEPLOYMENT,
            parameters={"model": m, "publish": publish, "on_busy": on_busy},
            timeout=0,  # start them all; wait() below watches them together
            flow_run_name=f"compress-{m}",
            tags=[f"model:{m}"],
        )
        for m in models
    }
    log.info("dispatched %s to work pool %s", ", ".join(f"{m} ({r.id})" for m, r in runs.items()), cfg.work_pool)
    done: dict[str, Any] = {}

    def land(model: str) -> None:  # its run completed: fetch its outputs while the others build
        done[model] = materialise(model, root, publish)

    failed = wait({m: r.id for m, r in runs.items()}, cfg.timeout_s, on_complete=land)
    return done, failed


def states(client: Any, runs: dict[str, Any]) -> dict[str, Any]:
    """``{model: state}`` of flow runs ``{model: id}``, one API call per PAGE runs rather than
    one per run: a nightly of hundreds of models polls the server once a cycle, not hundreds."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    by_id, ids, found = {str(i): m for m, i in runs.items()}, list(runs.values()), {}
    for start in range(0, len(ids), PAGE):
        page = ids[start : start + PAGE]
        for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=page)), limit=PAGE):
            found[by_id[str(run.id)]] = run.state
    return found


def _nothing(model: str) -> None:
    return None


def wait(runs: dict[str, Any], timeout_s: float, on_complete: Callable[[str], None] = _nothing) -> dict[str, str]:
    """Watch flow runs ``{model: id}`` until each is final or ``timeout_s`` has passed since
    dispatch; cancels the late ones and calls ``on_complete(model)`` for each as it completes.
    Returns ``{model: reason}`` for those that did not complete, or whose ``on_complete`` raised
    (the others are still watched: one model's failed fetch must not abandon the rest)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    deadline, pending, failed = time.monotonic() + timeout_s, dict(runs), {}
    with get_client(sync_client=True) as client:
        while pending:
            for m, state in states(client, pending).items():
                run_id = pending[m]
                if state is not None and state.is_final():
                    pending.pop(m)
                    if state.is_completed():
                        try:
                            on_complete(m)
                        except Exception as e:
                            failed[m] = f"run {run_id} completed, but materialising it here failed: {e}"
                    else:
                        failed[m] = f"run {run_id} ended {state.name}: {state.message or ''}".rstrip(": ")
            if pending and time.monotonic() > deadline:
                for m, run_id in pending.items():
                    client.set_flow_run_state(run_id, Cancelled(message=f"timed out after {timeout_s:g} s"), force=True)
                    failed[m] = f"timed out after {timeout_s:g} s (run {run_id} cancelled)"
                break
            time.sleep(POLL_S if pending else 0)
    for m, why in failed.items():
        log.error("%s: %s", m, why)
    return failed


def materialise(model: str, root: str, publish: bool) -> dict[str, Any]:
    """The model's stages in this checkout, each fetched from the stage cache (or built,
    should its key differ here: another kernel profile, say)."""
    with s3io.available(Project.at(root)):
        return {name: stage_cache.run(stage(name), model, root) for name in order(publish)}
