"""The nightly flow: every catalogue model through every stage, then a table per model.

Run it once on the embedded default (ephemeral Prefect, local SeaweedFS) with
``make nightly``; deploy it with ``prefect deploy --all`` (see prefect.yaml).
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows import cancel
from flows.prefect_tasks import compress_model, record_in_dvc
from tasks.core import logs
from tasks.core.project import Project
from tasks.pools import profile_kernels, targets
from tasks.present.console import table
from tasks.storage import s3 as s3io
from tasks.storage.lease import LeaseBusy


def task_runner(workers: int) -> Any:
    """Models one after another in this process (1), or side by side on a local Dask
    cluster of ``workers`` single-threaded processes (prefect-dask's DaskTaskRunner)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
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


@flow(name="nightly-compression", log_prints=True)
def nightly(
    models: list[str] | None = None,
    root: str = ".",
    pools: list[str] | None = None,
    workers: int = 1,
    publish: bool = True,
    on_busy: str = "wait",
) -> dict[str, Any]:
    """Compress ``models`` (default: the whole catalogue in params.yaml) for hardware
    ``pools`` (default: ``targets`` in params.yaml). This machine's pool is always served
    by the stages; each other pool is benchmarked on its own workers. ``workers`` > 1
    spreads the models over a local Dask cluster (latencies measured meanwhile share
    the CPU: keep 1 for benchmark numbers you publish). ``publish=False`` is a dry run:
    it stops after the benchmark and leaves S3 and dvc.lock alone. A model another run is
    compressing (its lease on S3: ``tasks/storage/lease.py``) is waited for
    (``on_busy="wait"``, the default: cron and a manual trigger both finish) or skipped
    (``"skip"``, reported as such); the log names the run that holds it."""
    project = Project.at(root)
    chosen = models or project.catalogue()
    for m in chosen:
        project.check(m)  # unknown models, malformed entries and pools fail before any work starts
    remote = [p.name for p in targets(project, pools) if not p.inline]
    logger = get_run_logger()
    with cancel.handling(), s3io.available(project):
        if profile_kernels(project):  # a CPU family this pool had no profile for: measured once, committed
            logger.info("measured the kernel profile of this machine's preset: int8 stages re-run on it")
        logger.info("compressing %s on %d worker(s)", ", ".join(chosen), workers)
        with task_runner(workers) as runner:
            args = {"root": root, "remote_pools": remote, "publish": publish, "on_busy": on_busy}
            futures = {m: runner.submit(compress_model, parameters={"model": m, **args}) for m in chosen}
            results, failed, deferred = {}, {}, {}
            for m, f in futures.items():
                try:
                    results[m] = f.result()
                except LeaseBusy as e:  # on_busy="skip": another run has it; not a failure
                    logger.warning("%s deferred: %s", m, e)
                    deferred[m] = str(e)
                except Exception as e:  # one model's failure never stops the batch
                    failed[m] = e
                    logger.error("%s failed: %s", m, e)
    if publish and results:  # only the stages of the models that ran: others may never have been built here
        record_in_dvc(root, list(results))
    if failed:
        reasons = "; ".join(f"{m}: {e}" for m, e in failed.items())
        raise ModelsFailed(f"{len(failed)} of {len(chosen)} model(s) failed ({reasons}); the others are done")
    return {**results, **{m: {"deferred": why} for m, why in deferred.items()}}


def print_tables(project: Project, models: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    for m in models:
        header, rows = table(project, m)
        t = Table(title=f"{m}", show_lines=False)
        for h in header:
            t.add_column(h, overflow="fold")
        for r in rows:
            t.add_row(*r)
        console.print(t)


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.nightly [--on-busy wait|skip] [MODEL ...]`` (``make nightly``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.nightly")
    parser.add_argument("models", nargs="*", help="catalogue models (default: the whole catalogue)")
    parser.add_argument("--on-busy", choices=["wait", "skip"], default="wait",
                        help="a model another run is compressing: wait for it (default) or skip it")  # fmt: skip
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logs.setup()
    cancel.reap_orphaned_api()  # before this run starts its own ephemeral API
    project = Project.at(".")
    done = nightly(args.models or None, on_busy=args.on_busy)
    for m, result in done.items():
        if "deferred" in result:
            print(f"{m}: deferred, {result['deferred']}")
    print_tables(project, [m for m, result in done.items() if "deferred" not in result])


if __name__ == "__main__":
    main()
