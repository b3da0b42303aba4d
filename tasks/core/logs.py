"""Console and log file for the command-line entry points: what happens, in words, no noise.

The console shows the pipeline's own messages and any error. Everything else (third-party
warnings such as onnxruntime's "consider pre-processing", Python warnings, the detail of
every stage) goes to the log file, which the entry point names at the end. While a live
progress display owns the terminal, the pipeline's per-stage INFO lines go to the file
too: the display already says which stage runs.

Child processes (a stage under kernel pins) inherit ``PIPELINE_LOG_FILE`` and
``PIPELINE_CONSOLE`` and log the same way into the same file.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

LOG_FILE_ENV = "PIPELINE_LOG_FILE"
CONSOLE_ENV = "PIPELINE_CONSOLE"  # "quiet": pipeline INFO to the file only (a live display is on)
# Prefect's flow- and task-run loggers: a failure there (with its traceback) is the pipeline's
# own failure, which the entry point reports in words with the model's page; the file keeps it.
REPORTED_ELSEWHERE = ("prefect.flow_runs", "prefect.task_runs")
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class ConsoleFilter(logging.Filter):
    """What the console shows: errors from anyone; the pipeline's warnings, and its INFO
    lines unless a live display is on. Read per record, so a display can turn it on and off."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(REPORTED_ELSEWHERE):
            return record.levelno >= logging.CRITICAL
        if record.levelno >= logging.ERROR:
            return True
        if not record.name.startswith("pipeline"):
            return False
        return record.levelno >= logging.WARNING or os.environ.get(CONSOLE_ENV) != "quiet"


def default_log_file(root: Path, name: str) -> Path:
    """``data/logs/<name>-<UTC time>.log`` under ``root``."""
    return root / "data" / "logs" / f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.log"


def _console_handlers(root: logging.Logger) -> list[logging.Handler]:
    """The root's stream handlers (Prefect installs its own there), one added if none."""
    found: list[logging.Handler] = [
        h for h in root.handlers if type(h) is not logging.FileHandler and isinstance(h, logging.StreamHandler)
    ]
    if not found:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
        root.addHandler(console)
        found = [console]
    return found


def _to_file(root: logging.Logger, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    same = [h for h in root.handlers if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == target.resolve()]
    if not same:
        handler = logging.FileHandler(target, encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    os.environ[LOG_FILE_ENV] = str(target.resolve())


def setup(log_file: Path | None = None) -> Path | None:
    """Route logging as the module docstring says; returns the log file in use, if any.

    Args:
        log_file: where third-party output and stage detail go; default: the file a parent
            process named in ``PIPELINE_LOG_FILE``, else none (console only, third-party quiet).
    """
    root = logging.getLogger()
    for handler in _console_handlers(root):
        if not any(isinstance(f, ConsoleFilter) for f in handler.filters):
            handler.addFilter(ConsoleFilter())
    root.setLevel(logging.WARNING)  # third-party INFO (onnxruntime logs every tensor) is dropped
    logging.getLogger("pipeline").setLevel(logging.INFO)
    logging.captureWarnings(True)  # Python warnings become log records: to the file, not the console
    os.environ.setdefault("TQDM_DISABLE", "1")  # Great Expectations and transformers draw progress bars
    target = log_file or (Path(os.environ[LOG_FILE_ENV]) if os.environ.get(LOG_FILE_ENV) else None)
    if target is not None:
        _to_file(root, target)
    return target
