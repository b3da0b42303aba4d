"""Techniques that do not apply to a model are skipped with the reason, never failed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_compression.errors import NotApplicable
from tasks.core.project import Project

log = logging.getLogger("pipeline")
Body = Callable[[Project, str, Path], dict[str, Any]]


def skip_reason(project: Project, model: str, technique: str) -> str | None:
    """Why ``technique`` does not run for ``model`` (its stage then records the reason and
    writes no artifact), or None. The kind's reason comes first; a null section (the
    entry's, or the default it falls back to) means "not requested"."""
    reason = project.kind(model).skip_reason(project, model, technique)
    if reason is None and project.section(model, technique) is None:
        where = project.param_path(model, technique) or f"models.{model}.{technique}"
        reason = f"not requested ({where} is null in params.yaml)"
    return reason


def skippable(body: Body, technique: str) -> Body:
    """Wrap a stage body: a technique that cannot apply is skipped with its reason, logged,
    and recorded in the stage's record; it never fails the batch."""

    def run(project: Project, model: str, out: Path) -> dict[str, Any]:
        reason = skip_reason(project, model, technique)
        if reason is not None:
            log.info("%s/%s skipped: %s", model, technique, reason)
            return {"skipped": reason}
        try:
            summary: dict[str, Any] = body(project, model, out)
        except NotApplicable as e:
            log.warning("%s/%s skipped: %s", model, technique, e)
            for leftover in sorted(out.rglob("*"), reverse=True):  # whatever the body wrote before it found out
                leftover.rmdir() if leftover.is_dir() else leftover.unlink()
            return {"skipped": str(e)}
        return summary

    run.__module__ = body.__module__  # the stage's module, for its code set
    return run
