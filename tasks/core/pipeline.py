"""Every stage, in run order: the one list the CLI, ``dvc.yaml`` and the Prefect flows share."""

from __future__ import annotations

from functools import cache

from model_compression.config import load
from tasks.core.project import Project
from tasks.core.stage import Stage

ORDER: tuple[str, ...] = (
    "zoo", "fetch", "baseline", "score", "prune", "quantize", "factorize", "teach", "distill", "recipe", "search",
    "package", "validate", "benchmark", "publish", "report",
)  # fmt: skip


@cache
def order(publish: bool = True) -> tuple[str, ...]:
    """The stages a run goes through: all of ``ORDER``, or up to the benchmark when it publishes nothing."""
    return ORDER if publish else ORDER[: ORDER.index("publish")]


def stage(name: str) -> Stage:
    """The declaration of stage ``name`` (``tasks/stages/<name>.py``)."""
    if name not in ORDER:
        raise ValueError(f"unknown stage {name!r}; stages: {list(ORDER)}")
    found: Stage = load(f"tasks.stages.{name}:STAGE")
    return found


def stages() -> dict[str, Stage]:
    return {name: stage(name) for name in ORDER}


def stage_status(project: Project, model: str, name: str) -> str:
    """'up to date', 'will run' (inputs present, output stale or missing) or 'after upstream'."""
    st = stage(name)
    try:
        if any(not path.exists() for path in st.inputs(project, model).values()):
            return "after upstream"
        return "up to date" if st.up_to_date(project, model) else "will run"
    except FileNotFoundError as e:  # e.g. a catalogue seed that is not on this machine
        return f"blocked: {e}"
