"""The page of a model whose run failed: the reason at the top.

A failed chain never reaches the report stage, and the ``report/report.html`` on disk is an
earlier run's. So the flow writes ``data/<model>/report-failed.html`` beside it: what failed
and why, when, where the full log is, and a link to that earlier report marked as such. The
next run that completes removes the page.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from tasks.core.project import Project

PAGE = "report-failed.html"


def path(project: Project, model: str) -> Path:
    return project.data / model / PAGE


def write(project: Project, model: str, reason: str, log_file: str | None = None) -> Path:
    """Write the failure page of ``model``; returns its path."""
    earlier = project.stage_dir(model, "report") / "report.html"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    lines = [
        f"<h1>{html.escape(model)}: the run failed</h1>",
        '<div style="border-left:6px solid #c62828;background:#fdecea;padding:8px 12px;max-width:1200px">',
        f"<b>Why:</b> <code style='white-space:pre-wrap'>{html.escape(reason)}</code></div>",
        f"<p>When: {when}. Nothing of this run was published for {html.escape(model)}; the other models",
        "of the batch are unaffected.</p>",
    ]
    if log_file:
        lines.append(f"<p>Full log: <code>{html.escape(log_file)}</code></p>")
    if earlier.is_file():
        lines.append(f'<p>The last complete report, <b>from an earlier run</b>: <a href="{earlier.as_uri()}">'
                     f"{html.escape(str(earlier.relative_to(project.root)))}</a></p>")  # fmt: skip
    page = path(project, model)
    page.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(lines)
    page.write_text(f"<!doctype html><meta charset='utf-8'><title>{html.escape(model)}: failed</title>"
                    f"<body style='font-family:sans-serif;margin:24px'>\n{body}\n</body>\n")  # fmt: skip
    return page


def clear(project: Project, model: str) -> None:
    """A run of ``model`` completed: its failure page, if any, is out of date."""
    path(project, model).unlink(missing_ok=True)
