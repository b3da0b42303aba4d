"""The selection policy named in params.yaml (``selection:``): which published artifact
serving should take, and which trial the recipe search keeps (``search/select.py``)."""

from __future__ import annotations

from model_compression.search.select import check_policy
from tasks.core.project import Project


def policy(project: Project) -> str:
    """``smallest`` (default), ``fastest`` or ``mdl``; anything else is an error naming them."""
    try:
        return check_policy(str(project.params.get("selection", "smallest")))
    except ValueError as e:
        raise ValueError(f"params.yaml {e}") from e
