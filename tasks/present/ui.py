"""What a run shows in the Prefect UI, per model: a markdown summary, a table of every
candidate (size, quality, latency, pass/fail), the search's trials and links to the
published objects. Built here as plain values; ``flows/ui.py`` posts them to Prefect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.core.project import Project
from tasks.evaluation import load_rows
from tasks.present.console import table


@dataclass(frozen=True)
class UiArtifact:
    """One Prefect artifact: ``form`` is markdown, table or link; ``body`` its content."""

    form: str
    key: str
    body: Any
    description: str = ""


def artifacts(project: Project, model: str, pools: dict[str, dict[str, Any]] | None = None) -> list[UiArtifact]:
    """The UI artifacts of ``model``'s latest run. ``pools`` are the remote pools'
    outcomes (``flows/pool_serve.py``)."""
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
    out = [
        UiArtifact("markdown", f"{model}-summary", "\n".join(lines), f"Nightly compression of {model}"),
        UiArtifact(
            "table", f"{model}-candidates", [dict(zip(header, r, strict=True)) for r in rows], "Every candidate"
        ),
    ]
    if search.is_file():  # every trial of the recipe search, failed and stopped ones included
        trials = project.read_output(model, "search", "trials.json")
        cols = ("trial", "recipe", "status", "size_bytes", "p50_ms", "shortfall", "seconds")
        table_rows = [{c: t.get(c) for c in cols} | {"why": "; ".join(t.get("reasons") or [])} for t in trials]
        out.append(UiArtifact("table", f"{model}-search-trials", table_rows, "Recipe search: every trial"))
    for name, uri in sorted(published["artifacts"].items()):
        text = f"{model} {name} (version {published['version']})"
        out.append(UiArtifact("link", f"{model}-{name}-published", uri, text))
    return out


def _search_line(summary: dict[str, Any]) -> str:
    head = f"Search: {summary['completed']} of {summary['planned']} trials, stopped by {summary['stopped_by']}; "
    if summary["best"]:
        best = summary["best"]
        return head + f"picked `{best['recipe']}` ({summary['selection']}), {best['ratio_vs_fp32']:.2f}x smaller."
    miss = summary["nearest_miss"]
    if miss:
        return head + f"**nothing passed**; nearest miss `{miss['recipe']}`: {'; '.join(miss['missed'])}."
    return head + "**no trial completed**."
