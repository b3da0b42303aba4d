"""One live line per model while a run works: stages done, the stage running, and while
it trains, its step and loss (read from ``data/<model>/.progress.json``, tasks/core/progress.py).

On a terminal the display owns the screen, and the pipeline's per-stage INFO lines go to
the log file only (tasks/core/logs.py); warnings and errors still print above it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tasks.core import logs
from tasks.core import progress as status
from tasks.core.pipeline import ORDER, stage_status
from tasks.core.project import Project
from tasks.core.stage import record_path

POLL_S = 0.5


def _up_to_date(project: Project, model: str, name: str) -> bool:
    try:
        return stage_status(project, model, name) == "up to date"
    except ValueError:
        return False  # a malformed entry: the run that follows names it


def now_text(state: dict[str, Any], finished: bool) -> str:
    """``distill 120/800 loss 0.4213``, ``validate``, ``failed in fetch`` or ``done`` (the last column)."""
    if finished:
        return "done"
    if state.get("failed"):
        return f"failed in {state['stage']}" if "stage" in state else "failed"
    if not state:
        return "waiting"
    text = str(state.get("stage", ""))
    if "step" in state and "loss" in state:
        text += f" {state['step']}/{state['steps']} loss {state['loss']:.4f}"
    return text


@contextmanager
def progress(project: Project, models: list[str]) -> Iterator[Any]:
    """A rich progress line per model: stages done out of all (a stage is done when up to
    date at the start or its record was written since), what runs now, elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    start = time.time()
    done_at_start = {m: {n for n in ORDER if _up_to_date(project, m, n)} for m in models}
    stop = threading.Event()
    bars = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[now]}"))  # fmt: skip
    ids = {m: bars.add_task(m, total=len(ORDER), now="waiting") for m in models}

    def update(m: str) -> None:
        records = (record_path(project.stage_dir(m, n)) for n in ORDER)
        fresh = {n for n, r in zip(ORDER, records, strict=True) if r.is_file() and r.stat().st_mtime >= start}
        done = len(done_at_start[m] | fresh)
        bars.update(ids[m], completed=done, now=now_text(status.read(project.data, m), done == len(ORDER)))

    def watch() -> None:
        while not stop.wait(POLL_S):
            for m in models:
                update(m)

    quiet = bars.console.is_terminal and os.environ.get(logs.CONSOLE_ENV) is None
    if quiet:
        os.environ[logs.CONSOLE_ENV] = "quiet"
    with bars:
        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            yield bars
        finally:
            stop.set()
            thread.join()
            for m in models:
                update(m)
            if quiet:
                os.environ.pop(logs.CONSOLE_ENV, None)
