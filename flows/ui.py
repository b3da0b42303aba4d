"""Post a model's UI artifacts (``tasks/present/ui.py``) to the Prefect run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from tasks.core.project import Project
from tasks.present.ui import artifacts

POST: dict[str, Callable[[Any, str, str], Any]] = {
    "markdown": lambda body, key, text: create_markdown_artifact(body, key=key, description=text),
    "table": lambda body, key, text: create_table_artifact(body, key=key, description=text),
    "link": lambda body, key, text: create_link_artifact(body, link_text=text, key=key),
}


def create_artifacts(model: str, root: str = ".", pools: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Create the UI artifacts of ``model``'s latest run; returns their keys."""
    keys = []
    for a in artifacts(Project.at(root), model, pools):
        POST[a.form](a.body, a.key, a.description)
        keys.append(a.key)
    return keys
