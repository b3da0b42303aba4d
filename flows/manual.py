"""The manual run: what the Prefect UI's form for the ``manual`` deployment asks for.

Typed as a pydantic model so the UI shows each field with its description and default,
and a wrong value is refused before the run starts. It picks *what* to run (models,
pools, whether to publish, where the project is), never hyperparameters: tolerances and
technique settings stay in params.yaml, the single source a rebuild reads.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from flows.nightly import nightly


class ManualRun(BaseModel):
    """One hand-started run of the pipeline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: list[str] = Field(
        default_factory=list,
        description="Catalogue models to compress (names from params.yaml). Empty: the whole catalogue.",
    )
    pools: list[str] = Field(
        default_factory=list,
        description="Hardware pools to benchmark on and publish for (params.yaml pools). "
        "Empty: the targets in params.yaml. This machine's pool is always served.",
    )
    publish: bool = Field(
        default=True,
        description="Upload the artifacts that pass to S3 and serve the pools. Off: a dry run that stops "
        "after the benchmark, uploads nothing and leaves dvc.lock alone.",
    )
    on_busy: Literal["wait", "skip"] = Field(
        default="wait",
        description="When another run is compressing one of these models (the nightly, say): wait for it, "
        "or skip the model at once. Either way the log names the run holding it.",
    )
    root: str = Field(
        default=".",
        description="The project checkout holding params.yaml, relative to the worker's working directory.",
    )


@flow(name="manual-compression", log_prints=True)
def manual(request: ManualRun = ManualRun()) -> dict[str, Any]:  # noqa: B008  # frozen: a safe default
    """Compress the chosen models for the chosen pools, as the nightly run would."""
    return nightly(request.models or None, request.root, request.pools or None, publish=request.publish,
                   on_busy=request.on_busy)  # fmt: skip
