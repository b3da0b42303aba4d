"""The static HTML report of one model: what a person opens to see a night's result.

The page opens with the verdict (what was published, or "Nothing published" and each
candidate's reason), then the selected artifact with both its sizes, then the tables
(``report_tables.py``: each artifact labelled with its recipe steps or technique, and
published or why not) and the figures. It fits a 1280 px window: the report test
measures it in headless Chromium.

``data/<model>/report/report.html`` is self-contained (figures embedded as PNG) and is
uploaded beside the published version (``<model>/<version>/<pool>/report.html``). The
same figures are written to ``data/<model>/report/plots/`` for ``dvc plots``:

- ``pareto_size.png``: size against quality, one point per candidate, failed ones hollow,
  the selected one (params.yaml ``selection``) ringed;
- ``pareto_latency.png``: p50 latency against quality, the same marks;
- ``layers.png``: per-tensor bars: sparsity of the pruned artifact, stored bits against
  entropy bits of the int8 artifact, entropy of the fp32 weights at 8 bits;
- ``history.png``: every version published for this model and pool, from the manifests
  on S3 (upload time, size ratio and quality per artifact): the run's history across nights,
  its time axis spanning the uploads, not a default range.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from model_compression.info.onnx_weights import onnx_layer_stats
from model_compression.search.pareto import front
from tasks.core.project import Project
from tasks.present import labels as labels_of
from tasks.present import report_tables as tables
from tasks.storage import s3 as s3io

TOP_TENSORS = 24  # the largest tensors per panel: MiniLM has 56, a readable chart fewer


def _figure_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _label_points(ax: Any, at: dict[tuple[float, float], list[str]]) -> None:
    """One label per point (the names there, comma-separated), moved down a line while it
    would land on the label of a point close to it: near-equal candidates stay readable."""
    ax.autoscale_view()
    placed: list[tuple[float, float]] = []  # label anchors, in display pixels
    for xy, names in sorted(at.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        px, py = ax.transData.transform(xy)
        dy = 4.0
        while any(abs(px - qx) < 60 and abs(py + dy - qy) < 11 for qx, qy in placed):
            dy -= 11
        placed.append((px, py + dy))
        ax.annotate(", ".join(names), xy, textcoords="offset pixels", xytext=(6, dy), fontsize=8)


def _pareto(metrics: dict[str, Any], x: str, xlabel: str, quality: str, pick: str | None, log_x: bool) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
    at: dict[tuple[float, float], list[str]] = {}  # artifacts at the same point share one label
    for s, m in metrics.items():
        ok = m["passed"] and (s == "baseline" or m["uri"])
        ax.scatter(m[x], m[quality], s=50, facecolors="C0" if ok else "none", edgecolors="C0" if ok else "C3")
        at.setdefault((m[x], m[quality]), []).append("fp32" if s == "baseline" else s)
        if s == pick:
            ax.scatter(m[x], m[quality], s=220, facecolors="none", edgecolors="C2", linewidths=2, label=f"chosen: {s}")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(quality)
    ax.grid(alpha=0.3)
    ax.set_title("filled: published, hollow red: not published", fontsize=9)
    if pick:
        ax.legend(loc="best", fontsize=8)
    ax.margins(x=0.2, y=0.15)
    _label_points(ax, at)
    data = _figure_bytes(fig)
    plt.close(fig)
    return data


def _layers(project: Project, model: str) -> bytes:
    import matplotlib.pyplot as plt

    panels = [
        ("prune", "sparsity (fraction of zeros)", lambda t: [t.sparsity]),
        ("quantize", "bits per weight: stored / entropy", lambda t: [t.storage_bits, t.entropy_bits]),
        ("baseline", "fp32 entropy at 8 bits (bits/weight)", lambda t: [t.entropy_bits]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(16, 0.28 * TOP_TENSORS + 1.5), layout="constrained")
    for ax, (artifact, title, values) in zip(axes, panels, strict=True):
        if not project.artifact(model, artifact).is_file():
            ax.set_title(f"{artifact}: skipped for this model", fontsize=9)
            continue
        stats = sorted(onnx_layer_stats(project.artifact(model, artifact)), key=lambda t: -t.numel)[:TOP_TENSORS]
        if not stats:
            ax.set_title(f"{artifact}: no tensor large enough to plot", fontsize=9)
            continue
        names = [t.name.replace("encoder.encoder.", "").replace("_quantized", "")[-38:] for t in stats]
        rows = [values(t) for t in stats]
        ys = range(len(stats))
        ax.barh(ys, [r[0] for r in rows], color="C0", label="stored" if len(rows[0]) > 1 else None)
        if len(rows[0]) > 1:
            ax.barh(ys, [r[1] for r in rows], color="C1", height=0.4, label="entropy")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.04), ncols=2, fontsize=8)
        ax.set_yticks(list(ys), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{artifact}: {title}", fontsize=9)
    data = _figure_bytes(fig)
    plt.close(fig)
    return data


def history(s3: Any, settings: s3io.S3Settings, model: str, pool: str) -> list[dict[str, Any]]:
    """Every complete version published for ``model`` on ``pool``, oldest first."""
    out = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.publish_bucket, Prefix=f"{model}/")
    for page in pages:
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(f"/{pool}/manifest.json"):
                raw = s3io.get_bytes(s3, settings, settings.publish_bucket, obj["Key"])
                if raw is not None:
                    out.append({"time": obj["LastModified"].isoformat(), "manifest": json.loads(raw)})
    return sorted(out, key=lambda h: h["time"])


def time_axis(ax: Any, times: list[datetime]) -> None:
    """X limits from the data, 8 % of the span either side and at least half an hour (a
    single night's version is not drawn across years), dates labelled for that span."""
    import matplotlib.dates as mdates

    lo, hi = min(times), max(times)
    pad = max((hi - lo) * 0.08, timedelta(minutes=30))
    ax.set_xlim(lo - pad, hi + pad)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _history_plot(entries: list[dict[str, Any]], quality: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    names = sorted({a for e in entries for a in e["manifest"]["artifacts"]})
    times = [datetime.fromisoformat(e["time"]) for e in entries]
    for i, name in enumerate(names):
        pts = [
            (t, e["manifest"]["artifacts"][name]["metrics"])
            for t, e in zip(times, entries, strict=True)
            if name in e["manifest"]["artifacts"]
        ]
        t = [p[0] for p in pts]
        ax1.plot(t, [p[1]["ratio_vs_fp32"] for p in pts], "o-", color=f"C{i % 10}", label=name)
        ax2.plot(t, [p[1][quality] for p in pts], "o-", color=f"C{i % 10}", label=name)
    ax1.set_ylabel("x smaller than fp32 (ONNX)")
    ax2.set_ylabel(quality)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
        time_axis(ax, times)
    fig.legend(*ax1.get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    fig.suptitle(f"{len(entries)} published version(s), by upload time (UTC)", fontsize=9)
    data = _figure_bytes(fig)
    plt.close(fig)
    return data


def _fronts_plot(fronts: list[dict[str, Any]], quality: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    runs = list(dict.fromkeys(r["run"] for r in fronts))
    # points, not a line: a front over three objectives is not a curve in two of them
    for i, run in enumerate(runs):
        pts = [r for r in fronts if r["run"] == run and r["on_front"]]
        now = any(r["current"] for r in pts)
        style: dict[str, Any] = {
            "s": 70,
            "facecolors": "C3",
            "edgecolors": "C3",
            "zorder": 3,
            "label": f"{run} (this run)",
        }
        if not now:
            style = {"s": 40, "facecolors": "none", "edgecolors": f"C{i % 10}", "alpha": 0.6, "label": run}
        ax.scatter([r["size_bytes"] for r in pts], [r["quality"] for r in pts], **style)
        at: dict[tuple[float, float], list[str]] = {}  # artifacts at one point share a label
        for r in pts if now else []:
            at.setdefault((r["size_bytes"], r["quality"]), []).append(r["artifact"])
        for xy, names in at.items():
            ax.annotate(", ".join(names), xy, textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("ONNX size (bytes, log)")
    ax.set_ylabel(quality)
    ax.grid(alpha=0.3)
    ax.set_title(f"Pareto front (size x quality x latency), {len(runs)} run(s)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    data = _figure_bytes(fig)
    plt.close(fig)
    return data


def _trials_plot(trials: list[dict[str, Any]], quality: str) -> bytes:
    import matplotlib.pyplot as plt

    done = [t for t in trials if t["status"] in ("passed", "failed")]
    passing = [t for t in done if t["status"] == "passed"]
    # ringed: on the size x quality x latency front; joined and named: the size x quality front
    on3 = front(passing, {"size_bytes": "min", quality: "max", "p50_ms": "min"}) if passing else []
    on2 = front(passing, {"size_bytes": "min", quality: "max"}) if passing else []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in done:
        ok = t["status"] == "passed"
        ax.scatter(
            t["size_bytes"], t[quality], s=40, facecolors="C0" if ok else "none", edgecolors="C0" if ok else "C3"
        )
    for t, keep in zip(passing, on3, strict=True):
        if keep:
            ax.scatter(t["size_bytes"], t[quality], s=160, facecolors="none", edgecolors="C2", linewidths=1.5)
    edge = sorted((t["size_bytes"], t[quality], t["recipe"]) for t, keep in zip(passing, on2, strict=True) if keep)
    ax.step([e[0] for e in edge], [e[1] for e in edge], where="post", color="C2", lw=1)
    for i, (x, y, name) in enumerate(edge):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, -12 if i % 2 else 6), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("ONNX size (bytes, log)")
    ax.set_ylabel(quality)
    ax.grid(alpha=0.3)
    ax.set_title(
        f"search: {len(done)} trials; filled: passed, hollow red: failed; ringed: on the size x quality x latency "
        "front; line: size x quality front",
        fontsize=8,
    )
    data = _figure_bytes(fig)
    plt.close(fig)
    return data


CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222;line-height:1.4}
h1{font-size:1.6em;margin:0 0 .4em}h2{font-size:1.15em;margin:1.4em 0 .3em}
table{border-collapse:collapse;font-size:12px;margin:.4em 0 1em}
td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}th{background:#f4f4f4}
td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}td.a{max-width:230px}
td.why{max-width:250px}td.skip{text-align:center;color:#888}tr.pick{background:#edf7ed}
.steps{color:#555;font-size:11px}code{font-size:12px;overflow-wrap:anywhere}
.alert{border-left:5px solid #c62828;background:#fdecea;padding:8px 14px}
.ok{border-left:5px solid #2e7d32;background:#edf7ed;padding:8px 14px}.alert ul,.ok ul{margin:.3em 0}
figure{display:inline-block;vertical-align:top;margin:1em 1em 0 0;max-width:100%}
img{max-width:100%;height:auto}figcaption{font-size:12px;color:#555}"""


def _ordered(project: Project, model: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` in stage order (fp32 first, then each technique and recipe)."""
    names = [s for s in project.artifact_names(model) if s in metrics]
    return {s: metrics[s] for s in [*names, *sorted(set(metrics) - set(names))]}


def _notes(project: Project, model: str) -> str:
    split = project.stage_dir(model, "baseline") / "split.json"  # custom models only
    if split.is_file() and json.loads(split.read_text()).get("synthetic"):
        return (
            "<p><b>No evaluation data:</b> quality is agreement with fp32 on samples drawn from the "
            "declared input spec. It checks shapes and numerics only, not task quality.</p>"
        )
    return ""


def _figures_html(figures: dict[str, bytes]) -> str:
    return "".join(
        f'<figure><img alt="{n}" src="data:image/png;base64,{base64.b64encode(d).decode()}">'
        f"<figcaption>{n.replace('_', ' ')}</figcaption></figure>"
        for n, d in figures.items()
    )


def _figures(
    project: Project, model: str, metrics: dict[str, Any], quality: str, pick: str | None, history: dict[str, Any]
) -> dict[str, bytes]:
    """Every figure of the page, by file name (``plots/<name>.png``); ``history`` holds the
    publish ``entries``, the ``fronts`` and the search's ``trials``."""
    figures = {
        "pareto_size": _pareto(metrics, "size_bytes", "ONNX size (bytes, log)", quality, pick, True),
        "pareto_latency": _pareto(metrics, "p50_ms", "p50 latency (ms, serving batch)", quality, pick, False),
        "layers": _layers(project, model),
    }
    if history["entries"]:
        figures["history"] = _history_plot(history["entries"], quality)
    if history["fronts"]:
        figures["pareto_runs"] = _fronts_plot(history["fronts"], quality)
    trials = history["trials"]
    if trials and any(t["status"] in ("passed", "failed") for t in trials):
        figures["search_trials"] = _trials_plot(trials, quality)
    return figures


def render(
    project: Project,
    model: str,
    metrics: dict[str, Any],
    pool: str,
    out: Path,
    entries: list[dict[str, Any]],
    fronts: list[dict[str, Any]] | None = None,
    trials: list[dict[str, Any]] | None = None,
    chosen: dict[str, Any] | None = None,
) -> Path:
    """Write ``out/report.html`` and ``out/plots/*.png``; returns the HTML path.
    ``entries`` is the pool's publish ``history``, ``fronts`` the Pareto front of tonight
    and earlier runs, ``trials`` the search's trials, ``chosen`` the selection. The page
    opens with the verdict (what was published, or why nothing was), then the selection."""
    import matplotlib

    matplotlib.use("Agg")
    columns = project.kind(model).quality_columns(project, model)
    chosen = chosen or {}
    metrics = _ordered(project, model, metrics)
    history = {"entries": entries, "fronts": fronts or [], "trials": trials or []}
    figures = _figures(project, model, metrics, columns[0], chosen.get("selected"), history)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for name, data in figures.items():
        (out / "plots" / f"{name}.png").write_bytes(data)
    absent = labels_of.absent(project, model, set(metrics))
    labels = {s: labels_of.artifact_label(project, model, s) for s in metrics}
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(model)} compression report</title><style>{CSS}</style></head><body>
<h1>{html.escape(model)} ({html.escape(project.kind_name(model))}), pool {html.escape(pool)}</h1>
{tables.verdict(metrics, absent, pool)}
{tables.selection_note(metrics, chosen)}
{_notes(project, model)}
<h2>Candidates</h2>
{tables.candidates(metrics, columns, labels, chosen.get("selected"), absent)}
<h2>Package, description length, latency tail and memory</h2>
{tables.details(metrics, columns)}
{tables.intervals(metrics)}
<h2>Figures</h2><p>{len(entries)} version(s) published on this pool so far.</p>
{_figures_html(figures)}</body></html>
"""
    (out / "report.html").write_text(page)
    return out / "report.html"
