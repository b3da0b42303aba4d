"""What a run shows in the Prefect UI: per model, a markdown summary, a table of every
candidate (size, quality, latency, pass/fail) and links to the published objects."""

from __future__ import annotations

from typing import Any

from tasks.project import Project
from tasks.report import table
from tasks.validate import load_rows


def create_artifacts(model: str, root: str = ".", pools: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Create the UI artifacts of ``model``'s latest run; returns their keys. ``pools`` are
    the remote pools' outcomes (``tasks.pool_serve.serve_pool``)."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    project = Project.at(root)
    header, rows = table(project, model)
    reasons = {name: row["reasons"] for name, row in load_rows(project, model).items() if row["reasons"]}
    published: dict[str, Any] = project.read_output(model, "publish", "published.json")
    lines = [f"## {model}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if reasons:
        lines += ["", "**Not published:**", ""] + [f"- {name}: {'; '.join(why)}" for name, why in reasons.items()]
    lines += ["", f"Version `{published['version']}` on pool `{published.get('pool', '')}`."]
    for name, res in (pools or {}).items():
        if res["status"] != "benchmarked":
            lines.append(f"- pool `{name}`: **not benchmarked**: {res['reason']}")
        else:
            slow = f"; int8 slower than fp32 there: {', '.join(res['int8_slower'])}" if res["int8_slower"] else ""
            lines.append(
                f"- pool `{name}` ({res['cpu']}, preset {res['preset']}): version `{res['version']}`, "
                f"published {', '.join(res['published']) or 'nothing'}{slow}"
            )
    search = project.stage_dir(model, "search") / "search.json"
    if search.is_file():
        lines += ["", _search_line(project.read_output(model, "search", "search.json"))]
    keys = [f"{model}-summary", f"{model}-candidates"]
    create_markdown_artifact("\n".join(lines), key=keys[0], description=f"Nightly compression of {model}")
    create_table_artifact([dict(zip(header, r, strict=True)) for r in rows], key=keys[1], description="Every candidate")
    if search.is_file():  # every trial of the recipe search, failed and stopped ones included
        keys.append(f"{model}-search-trials")
        trials = project.read_output(model, "search", "trials.json")
        cols = ("trial", "recipe", "status", "size_bytes", "p50_ms", "shortfall", "seconds")
        table_rows = [{c: t.get(c) for c in cols} | {"why": "; ".join(t.get("reasons") or [])} for t in trials]
        create_table_artifact(table_rows, key=keys[-1], description="Recipe search: every trial")
    for name, uri in sorted(published["artifacts"].items()):
        keys.append(f"{model}-{name}-published")
        create_link_artifact(uri, link_text=f"{model} {name} (version {published['version']})", key=keys[-1])
    return keys


def _search_line(summary: dict[str, Any]) -> str:
    head = f"Search: {summary['completed']} of {summary['planned']} trials, stopped by {summary['stopped_by']}; "
    if summary["best"]:
        best = summary["best"]
        return head + f"picked `{best['recipe']}` ({summary['selection']}), {best['ratio_vs_fp32']:.2f}x smaller."
    miss = summary["nearest_miss"]
    if miss:
        return head + f"**nothing passed**; nearest miss `{miss['recipe']}`: {'; '.join(miss['missed'])}."
    return head + "**no trial completed**."
