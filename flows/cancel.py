"""Stopping a run: SIGTERM, SIGINT (Ctrl-C) or a Prefect cancel end it within seconds and
leave nothing half-done behind.

The flow's main thread only waits on its task runs, so it takes a signal at once even while
a stage computes in a worker thread. The handler then, in order:

1. deletes what a publish still uploading has written (no version without a manifest);
2. removes the ``<stage>.partial-*/`` folders of stages still running (a stage's previous
   output and record are untouched: they only move when a stage completes);
3. releases the models' leases, leaves the embedded SeaweedFS (stopping it unless another
   run still uses it), and stops Prefect's ephemeral API;

and exits with 128 + the signal number, without waiting for the worker threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from tasks.core import stage
from tasks.publishing import discard_in_flight
from tasks.storage import lease, seaweed

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
    for folder in stage.stop_commits():
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("removed the unfinished output %s", folder)
    for held in list(lease.HELD):
        held.release()  # the next run need not wait for it to expire
    seaweed.leave_all()  # stops the embedded SeaweedFS if no other run uses it
    for server in list(seaweed.RUNNING):
        server.stop()
    _stop_prefect_api()


API_MARK = b"prefect.server.api.server:create_app"


def reap_orphaned_api(prefect_home: str | None = None) -> list[int]:
    """Stop the ephemeral Prefect APIs left by runs that were SIGKILLed: a ``uvicorn`` of
    Prefect's app whose parent is gone (re-parented to pid 1) and whose ``PREFECT_HOME`` is
    this one (default: the environment's). Returns their pids. No signal handler runs on
    SIGKILL, so the next run is what cleans up after it."""
    home = (prefect_home or os.environ.get("PREFECT_HOME") or "").encode()
    reaped = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if API_MARK not in (proc / "cmdline").read_bytes():
                continue
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if ppid == 1 and b"PREFECT_HOME=" + home in env:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGTERM)
            reaped.append(int(proc.name))
            log.warning("stopped an orphaned ephemeral Prefect API (pid %s) left by a killed run", proc.name)
    return reaped


def _stop_prefect_api() -> None:
    """Stop the ephemeral Prefect server this process started (else its uvicorn outlives us)."""
    try:
        from prefect.server.api.server import SubprocessASGIServer
    except ImportError:
        return
    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
