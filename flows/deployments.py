"""``prefect.yaml``, written from params.yaml: the nightly and manual deployments, and one
``benchmark-onnx/<pool>`` deployment for each remote hardware pool, so the pool names are
written once (params.yaml ``pools``). ``python -m flows.cli sync`` writes it beside
``dvc.yaml``; a test fails when the committed file is not what params.yaml gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flows import concurrency
from tasks.pools import pools

HEADER = """\
# Written by `python -m flows.cli sync` from params.yaml (pools): do not edit by hand.
# Against a running server (docs/running.md):
#   prefect work-pool create --type process local-process
#   prefect --no-prompt deploy --name nightly --name manual
#   python -m flows.cli limits   # the per-model concurrency limits of `concurrency:` below
#   prefect worker start --pool local-process
# A hardware pool's benchmark deployment, once its work pool exists (docs/pools.md, "Hardware
# pools"): prefect --no-prompt deploy --name <pool>. `deploy --all` needs every work pool
# named below to exist: it stops at the first one that does not.
# Parameters pick models and pools only; every hyperparameter comes from params.yaml.
# The pull step runs flows in the checkout named by $PIPELINE_ROOT on the worker's machine.
"""

# The pipeline's own log lines (logger "pipeline") go to the run's logs in the UI.
ENV = {"PREFECT_LOGGING_EXTRA_LOGGERS": "pipeline", "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}


def document(root: Path) -> dict[str, Any]:
    from flows.per_model import config
    from tasks.core.project import Project

    project = Project.at(root)
    remote = [p for p in pools(project).values() if not p.inline]
    deployments: list[dict[str, Any]] = [
        {
            "name": "nightly",
            "description": "The whole catalogue for the target pools in params.yaml, every night at 02:00 UTC.",
            "entrypoint": "flows/nightly.py:nightly",
            "schedules": [{"cron": "0 2 * * *", "timezone": "UTC"}],
            "parameters": {},
            "job_variables": {"env": dict(ENV)},
            "work_pool": {"name": "local-process"},
        },
        {
            "name": "manual",
            "description": "Pick models and pools by hand from the UI's parameter form (flows/manual.py).",
            "entrypoint": "flows/manual.py:manual",
            "parameters": {},
            "job_variables": {"env": dict(ENV)},
            "work_pool": {"name": "local-process"},
        },
        {
            "name": "compress-model",
            "description": "One model's chain, dispatched per model by the nightly (flows/per_model.py).",
            "entrypoint": "flows/per_model.py:compress_one",
            "parameters": {},
            "job_variables": {"env": dict(ENV)},
            "work_pool": {"name": config(project).work_pool},
        },
    ]
    for spec in remote:  # a worker started on that hardware with `prefect worker start --pool <pool>` runs it
        deployments.append(
            {
                "name": spec.name,
                "description": f"Benchmark staged ONNX files on the hardware of pool {spec.name} (run_deployment).",
                "entrypoint": "flows/pool_bench.py:benchmark_onnx",
                "parameters": {},
                "job_variables": {"env": dict(ENV)},
                "work_pool": {"name": spec.work_pool},
            }
        )
    return {
        "name": "model-compression",
        "prefect-version": "3.8.8",
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PIPELINE_ROOT }}"}}],
        "deployments": deployments,
        # Not read by `prefect deploy`: `python -m flows.cli limits` creates these (flows/concurrency.py)
        "concurrency": concurrency.declaration(),
    }


def render(root: Path) -> str:
    return HEADER + yaml.safe_dump(document(root), sort_keys=False, width=120)


def write(root: Path) -> bool:
    """Write ``prefect.yaml`` in ``root``; returns whether it changed."""
    path = root / "prefect.yaml"
    text = render(root)
    if path.is_file() and path.read_text() == text:
        return False
    path.write_text(text)
    return True
