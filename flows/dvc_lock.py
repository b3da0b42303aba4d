"""Record a Prefect run's outputs in DVC (``dvc commit``), so ``dvc.lock`` and the DVC cache
describe exactly what the nightly run produced: ``dvc repro`` afterwards finds nothing to
do, ``dvc push`` can ship the data versions, and ``dvc metrics show`` reads the same files."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tasks.core import dvcyaml, faults
from tasks.core.pipeline import ORDER
from tasks.core.project import Project

log = logging.getLogger("pipeline")


def dvc_executable() -> str:
    local = Path(sys.executable).with_name("dvc")
    return str(local) if local.is_file() else (shutil.which("dvc") or "dvc")


LOCK_WAIT_S = 300.0  # another run's dvc commit or repro holds the repository's lock at most this long


def _commit(root: Path, env: dict[str, str], targets: list[str]) -> subprocess.CompletedProcess[str]:
    """``dvc commit -f``, waiting with a bounded retry while another DVC process holds the
    repository's lock (an overlapping run's own commit): a finished run must not fail on it."""
    deadline, delay = time.monotonic() + LOCK_WAIT_S, 1.0
    while True:
        out = subprocess.run([dvc_executable(), "commit", "-f", *targets], cwd=root, env=env, capture_output=True,
                             text=True)  # fmt: skip
        locked = "Unable to acquire lock" in out.stderr + out.stdout
        if out.returncode == 0 or not locked or time.monotonic() > deadline:
            return out
        log.info("dvc commit: the repository is locked by another DVC process; retrying in %.0f s", delay)
        time.sleep(delay)
        delay = min(delay * 2, 15.0)


def commit(root: str | Path = ".", models: list[str] | None = None) -> bool:
    """``dvc commit -f`` in ``root`` if it is a DVC repository; returns whether it ran.
    ``dvc.yaml`` is written first from the stage declarations, so the lock records the
    dependencies the run used. With ``models`` short of the catalogue, only their stages
    (``<stage>.<model>`` for every stage: ``score``, for one, feeds no later stage, so a
    ``--with-deps`` of the report would miss it)."""
    root = Path(root).resolve()
    if not (root / ".dvc").is_dir() or not (root / "dvc.yaml").is_file():
        log.info("%s is not a DVC repository: outputs not recorded in dvc.lock", root)
        return False
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    project = Project.at(root)
    if dvcyaml.write(project):
        log.info("dvc.yaml rewritten from the stage declarations")
    # `dvc commit` rewrites dvc.lock once per target (about 5 s each with three models'
    # stages in it, 4 minutes for 48); with the whole catalogue, no target writes it once
    whole = models is None or set(models) >= set(project.catalogue())
    targets = [] if whole else [dvcyaml.dvc_name(stage, m) for m in models or [] for stage in ORDER]
    faults.point("dvc-commit")
    out = _commit(root, env, targets)
    if out.returncode != 0:
        detail = (out.stderr.strip() or out.stdout.strip())[-2000:]
        raise RuntimeError(f"dvc commit {' '.join(targets)} failed in {root} (exit {out.returncode}): {detail}")
    log.info("recorded the run's outputs in dvc.lock")
    return True
