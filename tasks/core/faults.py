"""Failpoints: where the chaos tests and ``bench/chaos.py`` kill a run on purpose.

``PIPELINE_KILL_AT=<point>[,<point>...]`` makes this process SIGKILL itself on reaching a
named point, exactly as a machine losing power would stop it there: no handler, no
clean-up. Unset (always, outside those tests), ``point`` is one dictionary lookup.

Points: ``<stage>:built`` (a stage's output is complete in its partial folder, not yet
swapped in), ``upload`` (a publish has uploaded its first artifact), ``manifest`` (every
file of a version is uploaded, its manifest not yet written), ``latest`` (the manifest is
written, ``latest.json`` not yet moved), ``dvc-commit`` (the run's last step).
"""

from __future__ import annotations

import os
import signal

ENV = "PIPELINE_KILL_AT"


def point(name: str) -> None:
    """SIGKILL this process if ``name`` is one of the points ``PIPELINE_KILL_AT`` lists."""
    wanted = os.environ.get(ENV)
    if wanted and name in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
