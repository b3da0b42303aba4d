"""Stopping a run: SIGTERM, SIGINT (Ctrl-C) or a Prefect cancel end it within seconds and
leave nothing half-done behind.

The flow's main thread only waits on its task runs, so it takes a signal at once even while
a stage computes in a worker thread. The handler then, in order:

1. deletes what a publish still uploading has written (no version without a manifest);
2. removes the ``<stage>.partial/`` folders of stages still running (a stage's previous
   output and record are untouched: they only move when a stage completes);
3. stops the embedded SeaweedFS this process started, and Prefect's ephemeral API;

and exits with 128 + the signal number, without waiting for the worker threads.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from tasks.core import stage
from tasks.publishing import discard_in_flight
from tasks.storage import seaweed

log = logging.getLogger("pipeline")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def handling() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT stop the run cleanly (only the main thread can
    take signals; elsewhere the block runs as it is). The previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _stop) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    log.warning("%s received: stopping the run and cleaning up", name)
    for sig in SIGNALS:  # a second signal during clean-up does not interrupt it
        signal.signal(sig, signal.SIG_IGN)
    cleanup()
    log.warning("stopped by %s", name)
    logging.shutdown()
    os._exit(128 + signum)


def cleanup() -> None:
    """Undo what a run in flight has half done (each step on its own: one failing does not
    keep the others from running)."""
    try:
        for prefix in discard_in_flight():
            log.warning("deleted the unfinished upload %s", prefix)
    except Exception as e:  # S3 may be what failed: the version has no manifest and is never referenced
        log.warning("could not delete an unfinished upload: %s", e)
    for folder in list(stage.ACTIVE):
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("removed the unfinished output %s", folder)
    for server in list(seaweed.RUNNING):
        server.stop()
    _stop_prefect_api()


def _stop_prefect_api() -> None:
    """Stop the ephemeral Prefect server this process started (else its uvicorn outlives us)."""
    try:
        from prefect.server.api.server import SubprocessASGIServer
    except ImportError:
        return
    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
