"""The nightly flow: every catalogue model through every stage, then a table per model.

Run it once on the embedded default (ephemeral Prefect, local SeaweedFS) with
``make nightly``; deploy it with ``prefect deploy --all`` (see prefect.yaml).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows import cancel, per_model
from flows.prefect_tasks import compress_model, record_in_dvc
from tasks.core import logs
from tasks.core import progress as status
from tasks.core.project import Project
from tasks.pools import profile_kernels, remote_targets
from tasks.present import failure
from tasks.present.console import WIDTH, compact_table
from tasks.present.live import progress
from tasks.storage import s3 as s3io
from tasks.storage.lease import LeaseBusy


def task_runner(workers: int, dask_address: str | None = None) -> Any:
    """Models one after another in this process (1), side by side on a local Dask
    cluster of ``workers`` single-threaded processes (prefect-dask's DaskTaskRunner), or
    on the running Dask cluster at ``dask_address`` (``workers`` is then the cluster's)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if dask_address:
        return existing_cluster(dask_address)
    if workers == 1:
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    # The workers must report to this run's API. Without PREFECT_API_URL in their
    # environment each worker process starts an ephemeral server of its own: 5-10 s of
    # CPU per process, and task runs recorded where no one looks (measured: 4 two-core
    # tasks took 15.6 s on 2 workers instead of 6 s).
    env = {"PREFECT_API_URL": api_url()}
    allocator_for_torch()
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True, "env": env})


def existing_cluster(address: str) -> Any:
    """A running Dask cluster (``dask scheduler`` and its ``dask worker`` processes).

    Its workers report their task runs to the Prefect API of their own environment and
    read the project at the path this flow passes (a checkout at the same path on each
    machine, until stage outputs travel through S3). An ephemeral API lives on this
    process's loopback and ends with the run, so the cluster needs a served one."""
    from prefect.settings import PREFECT_API_URL
    from prefect_dask import DaskTaskRunner

    if not PREFECT_API_URL.value():
        raise ValueError(
            f"a Dask cluster at {address} needs a Prefect API its workers can reach: set PREFECT_API_URL "
            "(`prefect server start`) here and in the workers' environment"
        )
    return DaskTaskRunner(address=address)


def allocator_for_torch() -> None:
    """Undo Dask's glibc setting that slows torch down in its workers.

    Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's
    adaptive mmap threshold: every activation tensor of a training step is then mmapped
    and page-faulted afresh. Measured on a 1-thread 512x512 matmul loop: 2.17 s alone,
    2.9-3.0 s in each of 2 Dask workers, 2.2-2.4 s with the variable removed and one
    malloc arena per worker (MALLOC_ARENA_MAX=1, as each worker runs one task at a time).
    """
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    env["MALLOC_ARENA_MAX"] = "1"
    dask.config.set({"distributed.nanny.pre-spawn-environ": env})


def api_url() -> str:
    """The API this flow run reports to: PREFECT_API_URL, or the ephemeral server's."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or SubprocessASGIServer().api_url


class ModelsFailed(RuntimeError):
    """Some models of a batch failed; the rest were compressed (and published)."""

    def __init__(self, message: str, failed: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.failed = failed or {}  # {model: why}


@flow(name="nightly-compression", log_prints=True)
def nightly(
    models: list[str] | None = None,
    root: str = ".",
    pools: list[str] | None = None,
    workers: int = 1,
    publish: bool = True,
    on_busy: str = "wait",
    dask_address: str | None = None,
    dispatch: bool = False,
) -> dict[str, Any]:
    """Compress ``models`` (default: the whole catalogue in params.yaml) for hardware
    ``pools`` (default: ``targets`` in params.yaml). This machine's pool is always served
    by the stages; each other pool is benchmarked on its own workers.

    Where the models run: one after another in this process (the default); side by side
    on a local Dask cluster of ``workers`` processes (latencies measured meanwhile share
    the CPU: keep 1 for benchmark numbers you publish); on the running Dask cluster at
    ``dask_address`` ("tcp://host:8786", ``existing_cluster``); or, with ``dispatch``, as
    one ``compress-model`` flow run each on any worker of a work pool (``flows/per_model.py``).

    ``publish=False`` is a dry run: it stops after the benchmark and leaves S3 and
    dvc.lock alone. A model another run is compressing (its lease on S3:
    ``tasks/storage/lease.py``) is waited for (``on_busy="wait"``, the default: cron and a
    manual trigger both finish) or skipped (``"skip"``, reported as such); the log names
    the run that holds it."""
    project = Project.at(root)
    chosen = models or project.catalogue()
    for m in chosen:
        project.check(m)  # unknown models, malformed entries and pools fail before any work starts
    remote = remote_targets(project, pools)
    logger = get_run_logger()
    with cancel.handling(), s3io.available(project):
        if profile_kernels(project):  # a CPU family this pool had no profile for: measured once, committed
            logger.info("measured the kernel profile of this machine's preset: int8 stages re-run on it")
        if dispatch:
            results, failed = per_model.dispatch(chosen, root, publish, on_busy)
            deferred: dict[str, str] = {}
        else:
            results, failed, deferred = run_here(chosen, root, remote, publish, on_busy, workers, dask_address)
    if publish and results:  # only the stages of the models that ran: others may never have been built here
        record_in_dvc(root, list(results))
    report_failures(project, results, failed)
    if failed:
        reasons = "; ".join(f"{m}: {e}" for m, e in failed.items())
        raise ModelsFailed(f"{len(failed)} of {len(chosen)} model(s) failed ({reasons}); the others are done", failed)
    return {**results, **{m: {"deferred": why} for m, why in deferred.items()}}


def report_failures(project: Project, results: dict[str, Any], failed: dict[str, str]) -> None:
    """A failed model gets a page with the reason at the top (its report stage never ran);
    one that completed loses an earlier failure's page."""
    for m in results:
        failure.clear(project, m)
    for m, why in failed.items():
        status.failed(project.data, m)  # the live display says so
        page = failure.write(project, m, why, os.environ.get(logs.LOG_FILE_ENV))
        get_run_logger().error("%s failed; its page: %s", m, page)


def run_here(
    chosen: list[str],
    root: str,
    remote: list[str],
    publish: bool,
    on_busy: str,
    workers: int,
    dask_address: str | None,
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Each model's chain as a task on this flow's task runner: (results, failed, deferred)."""
    logger = get_run_logger()
    where = f"the Dask cluster at {dask_address}" if dask_address else f"{workers} worker(s)"
    logger.info("compressing %s on %s", ", ".join(chosen), where)
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    deferred: dict[str, str] = {}
    with task_runner(workers, dask_address) as runner:
        # an absolute root: a worker of an existing cluster does not share this cwd
        args = {"root": str(Path(root).resolve()), "remote_pools": remote, "publish": publish, "on_busy": on_busy}
        futures = {m: runner.submit(compress_model, parameters={"model": m, **args}) for m in chosen}
        for m, f in futures.items():
            try:
                results[m] = f.result()
            except LeaseBusy as e:  # on_busy="skip": another run has it; not a failure
                logger.warning("%s deferred: %s", m, e)
                deferred[m] = str(e)
            except Exception as e:  # one model's failure never stops the batch
                failed[m] = str(e)
                logger.error("%s failed: %s", m, e)
    return results, failed, deferred


def print_tables(project: Project, models: list[str]) -> None:
    """One table per model, each within ``console.WIDTH`` columns: metric names wrap at
    their underscores, numbers never shorten, a long reason wraps."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(width=WIDTH)
    for m in models:
        title, header, rows = compact_table(project, m)
        t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
        for i, h in enumerate(header):
            cells = [r[i] for r in rows]
            if i == 0:
                t.add_column(h, no_wrap=True, overflow="ellipsis", max_width=22)
            elif i == len(header) - 1:
                t.add_column(h, overflow="fold")
            else:
                t.add_column(h.replace("_", "\n"), justify="right", no_wrap=True, min_width=max(map(len, cells)))
        for r in rows:
            t.add_row(*r)
        console.print(t)


def run_and_report(project: Project, models: list[str] | None, log_name: str, **kwargs: Any) -> int:
    """Run ``nightly`` for a person at a console: one live line per model, then a table per
    model, each failed model's reason and page, and where the full log is. Returns the exit
    status: 1 when a model failed (the others are done and published)."""
    log_file = logs.setup(logs.default_log_file(project.root, log_name))
    cancel.reap_orphaned_api()  # before this run starts its own ephemeral API
    chosen, failed = models or project.catalogue(), {}
    try:
        with progress(project, chosen):
            done = nightly(models or None, str(project.root), **kwargs)
    except ModelsFailed as e:  # the others are done: their tables, then each failure and its page
        done, failed = {m: {} for m in chosen if m not in e.failed}, e.failed
    try:
        for m, result in done.items():
            if "deferred" in result:
                print(f"{m}: deferred, {result['deferred']}")
        if kwargs.get("publish", True):
            print_tables(project, [m for m, result in done.items() if "deferred" not in result])
        for m, why in failed.items():
            print(f"{m}: FAILED: {why}\n  its page: {failure.path(project, m)}")
    finally:
        print(f"Full log (third-party warnings, every stage's detail): {log_file}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.nightly [--on-busy wait|skip] [MODEL ...]`` (``make nightly``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.nightly")
    parser.add_argument("models", nargs="*", help="catalogue models (default: the whole catalogue)")
    parser.add_argument("--on-busy", choices=["wait", "skip"], default="wait",
                        help="a model another run is compressing: wait for it (default) or skip it")  # fmt: skip
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sys.exit(run_and_report(Project.at("."), args.models or None, "nightly", on_busy=args.on_busy))


if __name__ == "__main__":
    main()
