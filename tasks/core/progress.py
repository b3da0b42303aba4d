"""What a model's run is doing now, for the console's progress display.

One small JSON file per model, ``data/<model>/.progress.json``: the stage running, since
when (Unix seconds), and while it trains, its step and loss. It is written by whichever
process runs the stage (a pinned child, a Dask worker) and read by the display's thread,
so the display needs nothing shared but the disk. Writes are atomic (rename) and at most
a few per second; a failed write never fails the stage.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from model_compression import progress as training

MIN_INTERVAL_S = 0.5  # training reports every step; the file changes at most this often


def path(data: Path, model: str) -> Path:
    return data / model / ".progress.json"


def read(data: Path, model: str) -> dict[str, Any]:
    """The model's current status, or {} when there is none (or it is being replaced)."""
    try:
        return dict(json.loads(path(data, model).read_text()))
    except (OSError, ValueError):
        return {}


def _write(target: Path, status: dict[str, Any]) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".progress.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(target)
    except OSError:
        pass  # the display is a convenience: a full or read-only disk must not fail the stage


@contextmanager
def stage(data: Path, model: str, name: str) -> Iterator[None]:
    """Mark ``name`` as running for ``model``, and pass the library's training reports on."""
    target = path(data, model)
    status: dict[str, Any] = {"stage": name, "since": time.time()}
    _write(target, status)
    last = 0.0

    def trained(step: int, steps: int, loss: float) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= MIN_INTERVAL_S or step == steps:
            last = now
            _write(target, {**status, "step": step, "steps": steps, "loss": loss})

    with training.listening(trained):
        try:
            yield
        except BaseException:
            failed(data, model)
            raise


def failed(data: Path, model: str) -> None:
    """Mark ``model``'s run as failed (at the stage it was in, if any)."""
    _write(path(data, model), {**read(data, model), "failed": True})
