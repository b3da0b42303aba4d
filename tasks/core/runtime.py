"""The compute settings every stage body runs under: seed and threads from params.yaml.

Part of every stage's code set (``tasks.core.stage.ALWAYS``): a change here re-runs
everything, as it should, since it can change any stage's bits.
"""

from __future__ import annotations

import contextvars
import os

import torch


def configure(seed: int, threads: int) -> None:
    """Seed torch and pin its intra-op threads: the compute is deterministic for a machine."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# The orchestrator's run that is executing the stage (a Prefect flow-run id), recorded in
# what a stage publishes; None under ``python -m tasks`` and ``dvc repro``.
FLOW_RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("flow_run_id", default=None)
