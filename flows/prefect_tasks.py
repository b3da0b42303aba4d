"""The Prefect tasks: each wraps one stage's ``Stage.run``, unchanged.

Caching: a task's cache key is its stage key (code set, params, input hashes), given only
when the stage's outputs are on disk and intact, so a cached result never points at
missing files. Retries are for I/O stages only (zoo, fetch, publish), and there only for
failures that may pass next time (``worth_retrying``); compute is deterministic and a retry
would only repeat the same failure. Inside a flow, the search's
trials run as task runs of their own (``tasks/core/parallel.py``).
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flows import concurrency, dvc_lock, pool_serve, ui
from tasks.core import parallel, runtime
from tasks.core.pipeline import order, stages
from tasks.core.project import Project
from tasks.core.stage import DiskFullError, Stage
from tasks.storage import lease, stage_cache
from tasks.storage import s3 as s3io

IO_STAGES = {"zoo", "fetch", "publish"}


def worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn`` for I/O stages: retry a connection error, a timeout
    or a server's refusal, never a verdict. A ``ValueError`` (bad input, a quality or
    regression gate, a technique that does not apply) or a full disk fails the same way
    again, so the run fails at once, naming it, instead of three times over 22 s."""
    return not isinstance(state.data, ValueError | DiskFullError)


def cache_key(stage: Stage) -> Any:
    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        try:
            project = Project.at(parameters.get("root", "."))
            record = stage.up_to_date(project, parameters["model"])
        except (FileNotFoundError, ValueError):
            return None
        return None if record is None else f"{stage.name}-{parameters['model']}-{record['key']}"

    return key_fn


@contextmanager
def task_runs(workers: int) -> Iterator[parallel.Submit]:
    """``parallel`` executor whose work items are Prefect task runs on a thread runner."""
    with ThreadPoolTaskRunner(max_workers=workers) as runner:

        def submit(fn: Callable[..., Any], label: str, **kwargs: Any) -> concurrent.futures.Future[Any]:
            t = task(fn, name=fn.__name__.replace("_", "-"), task_run_name=label, cache_policy=NO_CACHE,
                     persist_result=False)  # fmt: skip
            future = runner.submit(t, parameters={k: quote(v) for k, v in kwargs.items()})
            out: concurrent.futures.Future[Any] = concurrent.futures.Future()

            def settle(_: Any) -> None:
                try:
                    out.set_result(future.result())
                except BaseException as e:
                    out.set_exception(e)

            future.wrapped_future.add_done_callback(settle)
            return out

        yield submit


def _current_flow_run() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def make_task(stage: Stage) -> Any:
    def run(model: str, root: str = ".") -> dict[str, Any]:
        token = runtime.FLOW_RUN_ID.set(_current_flow_run())
        try:
            with parallel.using(task_runs):
                return stage_cache.run(stage, model, root)
        finally:
            runtime.FLOW_RUN_ID.reset(token)

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
        retry_condition_fn=worth_retrying if io else None,
        log_prints=True,
    )


TASKS: dict[str, Any] = {name: make_task(stage) for name, stage in stages().items()}

record_in_dvc = task(dvc_lock.commit, name="record-in-dvc", task_run_name="dvc commit")
ui_artifacts = task(ui.create_artifacts, name="ui-artifacts", task_run_name="ui-artifacts[{model}]")
# No retries: dispatch never hangs (pool timeout) and its S3 calls retry on their own.
serve_pool = task(pool_serve.serve_pool, name="serve-pool", task_run_name="serve-pool[{model}@{pool}]")


def _compress(
    model: str, root: str = ".", remote_pools: list[str] | None = None, publish: bool = True, on_busy: str = "wait"
) -> dict[str, Any]:
    """One model end to end, holding the model's Prefect concurrency slot (under a
    server: ``flows/concurrency.py``) and its lease on S3 (``on_busy``: wait for another
    run that holds either, or raise ``LeaseBusy`` at once): every stage in order
    (nested task runs, so each is cached and shown on its own), then each remote pool,
    then the UI artifacts. A task rather than a subflow so that a task runner, Dask
    included, can run models side by side. ``publish=False`` stops after the benchmark:
    nothing is uploaded, no pool is served."""
    with (
        concurrency.model_slot(model, on_busy),
        s3io.available(Project.at(root)) as (s3, settings),
        lease.held(s3, settings, model, _current_flow_run() or "", on_busy),
    ):
        return _stages(model, root, remote_pools, publish)


def _stages(model: str, root: str, remote_pools: list[str] | None, publish: bool) -> dict[str, Any]:
    records: dict[str, Any] = {name: TASKS[name](model, root) for name in order(publish)}
    records["pools"] = {p: serve_pool(model, p, root) for p in remote_pools or []} if publish else {}
    if publish:
        ui_artifacts(model, root, records["pools"])
    records["ran_on"] = f"{socket.gethostname()}:{os.getpid()}"  # which worker process did the work
    return records


compress_model = task(_compress, name="compress-model", task_run_name="compress[{model}]")
