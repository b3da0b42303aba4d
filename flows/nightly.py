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
from tasks.prefect_tasks import TASKS, record_in_dvc, ui_artifacts
from tasks.project import Project
from tasks.report import table
from tasks.stages import ORDER


@flow(name="compress-model", log_prints=True)
def compress_model(model: str, root: str = ".") -> dict[str, Any]:
    """All stages for one model, in order; each stage's output feeds the next on disk."""
    records = {}
    for name in ORDER:
        records[name] = TASKS[name](model, root)
    ui_artifacts(model, root)
    return records


@flow(name="nightly-compression", log_prints=True)
def nightly(models: list[str] | None = None, root: str = ".") -> dict[str, Any]:
    """Compress ``models`` (default: the whole catalogue in params.yaml)."""
    project = Project.at(root)
    chosen = models or project.catalogue()
    for m in chosen:
        project.entry(m)  # unknown models fail before any work starts
    logger = get_run_logger()
    results = {}
    with s3io.available(project):
        for m in chosen:
            logger.info("compressing %s", m)
            results[m] = compress_model(m, root)
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
