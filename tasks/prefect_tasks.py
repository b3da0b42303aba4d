"""The Prefect tasks: each wraps one stage function, unchanged.

Caching: a task's cache key is its stage key (stage version, params, input hashes), given
only when the stage's outputs are on disk and intact, so a cached result never points at
missing files. Retries are for I/O stages only (zoo, fetch, publish); compute is
deterministic and a retry would only repeat the same failure.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from tasks import dvc_lock, pool_serve, ui
from tasks.project import Project
from tasks.stage import Stage
from tasks.stages import ORDER, STAGES

IO_STAGES = {"zoo", "fetch", "publish"}


def cache_key(stage: Stage) -> Any:
    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        try:
            project = Project.at(parameters.get("root", "."))
            record = stage.up_to_date(project, parameters["model"])
        except (FileNotFoundError, ValueError):
            return None
        return None if record is None else f"{stage.name}-{parameters['model']}-{record['key']}"

    return key_fn


def make_task(stage: Stage) -> Any:
    def run(model: str, root: str = ".") -> dict[str, Any]:
        return stage.run(model, root)

    run.__name__ = stage.name
    run.__doc__ = f"Prefect task of stage {stage.name!r}."
    io = stage.name in IO_STAGES
    return task(
        run,
        name=stage.name,
        task_run_name=f"{stage.name}[{{model}}]",
        cache_key_fn=cache_key(stage),
        persist_result=True,
        retries=3 if io else 0,
        retry_delay_seconds=[2, 5, 15] if io else 0,
        log_prints=True,
    )


TASKS: dict[str, Any] = {name: make_task(stage) for name, stage in STAGES.items()}

record_in_dvc = task(dvc_lock.commit, name="record-in-dvc", task_run_name="dvc commit")
ui_artifacts = task(ui.create_artifacts, name="ui-artifacts", task_run_name="ui-artifacts[{model}]")
# No retries: dispatch never hangs (pool timeout) and its S3 calls retry on their own.
serve_pool = task(pool_serve.serve_pool, name="serve-pool", task_run_name="serve-pool[{model}@{pool}]")


def _compress(
    model: str, root: str = ".", remote_pools: list[str] | None = None, publish: bool = True
) -> dict[str, Any]:
    """One model end to end: every stage in order (nested task runs, so each is cached
    and shown on its own), then each remote pool, then the UI artifacts. A task rather
    than a subflow so that a task runner, Dask included, can run models side by side.
    ``publish=False`` stops after the benchmark: nothing is uploaded, no pool is served."""
    stages = ORDER if publish else ORDER[: ORDER.index("publish")]
    records: dict[str, Any] = {name: TASKS[name](model, root) for name in stages}
    records["pools"] = {p: serve_pool(model, p, root) for p in remote_pools or []} if publish else {}
    if publish:
        ui_artifacts(model, root, records["pools"])
    records["ran_on"] = f"{socket.gethostname()}:{os.getpid()}"  # which worker process did the work
    return records


compress_model = task(_compress, name="compress-model", task_run_name="compress[{model}]")
