"""The nightly flow: every catalogue model through every stage, then a table per model.

Run it once on the embedded default (ephemeral Prefect, local SeaweedFS) with
``make nightly``; deploy it with ``prefect deploy --all`` (see prefect.yaml).
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger

from tasks import logs
from tasks import s3 as s3io
from tasks.pools import targets
from tasks.prefect_tasks import TASKS, record_in_dvc, serve_pool, ui_artifacts
from tasks.project import Project
from tasks.report import table
from tasks.stages import ORDER


@flow(name="compress-model", log_prints=True)
def compress_model(model: str, root: str = ".", remote_pools: list[str] | None = None) -> dict[str, Any]:
    """All stages for one model, in order (each stage's output feeds the next on disk),
    then every remote pool in ``remote_pools``: benchmarked there, published for it."""
    records = {}
    for name in ORDER:
        records[name] = TASKS[name](model, root)
    records["pools"] = {p: serve_pool(model, p, root) for p in remote_pools or []}
    ui_artifacts(model, root, records["pools"])
    return records


@flow(name="nightly-compression", log_prints=True)
def nightly(models: list[str] | None = None, root: str = ".", pools: list[str] | None = None) -> dict[str, Any]:
    """Compress ``models`` (default: the whole catalogue in params.yaml) for hardware
    ``pools`` (default: ``targets`` in params.yaml). This machine's pool is always served
    by the stages; each other pool is benchmarked on its own workers."""
    project = Project.at(root)
    chosen = models or project.catalogue()
    for m in chosen:
        project.entry(m)  # unknown models and pools fail before any work starts
    remote = [p.name for p in targets(project, pools) if not p.inline]
    logger = get_run_logger()
    results = {}
    with s3io.available(project):
        for m in chosen:
            logger.info("compressing %s", m)
            results[m] = compress_model(m, root, remote)
    record_in_dvc(root)
    return results


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


def main() -> None:
    logs.setup()
    models = sys.argv[1:] or None
    project = Project.at(".")
    nightly(models)
    print_tables(project, models or project.catalogue())


if __name__ == "__main__":
    main()
