"""The static HTML report of one model: what a person opens to see a night's result.

``data/<model>/report/report.html`` is self-contained (figures embedded as PNG) and is
uploaded beside the published version (``<model>/<version>/<pool>/report.html``). The
same figures are written to ``data/<model>/report/plots/`` for ``dvc plots``:

- ``pareto_size.png``: size against quality, one point per candidate, failed ones hollow,
  the selected one (params.yaml ``selection``) ringed;
- ``pareto_latency.png``: p50 latency against quality, the same marks;
- ``layers.png``: per-tensor bars: sparsity of the pruned artifact, stored bits against
  entropy bits of the int8 artifact, entropy of the fp32 weights at 8 bits;
- ``history.png``: every version published for this model and pool, from the manifests
  on S3 (upload time, size ratio and quality per artifact): the run's history across nights.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from model_compression.info.onnx_weights import onnx_layer_stats
from model_compression.search.pareto import front
from tasks.core.project import Project
from tasks.storage import s3 as s3io

TOP_TENSORS = 24  # the largest tensors per panel: MiniLM has 56, a readable chart fewer


def _figure_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _pareto(metrics: dict[str, Any], x: str, xlabel: str, quality: str, pick: str | None, log_x: bool) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for s, m in metrics.items():
        ok = m["passed"] and (s == "baseline" or m["uri"])
        ax.scatter(m[x], m[quality], s=60, facecolors="C0" if ok else "none", edgecolors="C0" if ok else "C3")
        ax.annotate("fp32" if s == "baseline" else s, (m[x], m[quality]), textcoords="offset points", xytext=(6, 4))
        if s == pick:
            ax.scatter(m[x], m[quality], s=260, facecolors="none", edgecolors="C2", linewidths=2, label=f"chosen: {s}")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(quality)
    ax.grid(alpha=0.3)
    ax.set_title("filled: published, hollow red: refused")
    if pick:
        ax.legend(loc="best")
    ax.margins(x=0.15, y=0.15)
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


def _history_plot(entries: list[dict[str, Any]], quality: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    names = sorted({a for e in entries for a in e["manifest"]["artifacts"]})
    for i, name in enumerate(names):
        pts = [
            (datetime.fromisoformat(e["time"]), e["manifest"]["artifacts"][name]["metrics"])
            for e in entries
            if name in e["manifest"]["artifacts"]
        ]
        t = [p[0] for p in pts]
        ax1.plot(t, [p[1]["ratio_vs_fp32"] for p in pts], "o-", color=f"C{i}", label=name)
        ax2.plot(t, [p[1][quality] for p in pts], "o-", color=f"C{i}", label=name)
    ax1.set_ylabel("x smaller than fp32")
    ax2.set_ylabel(quality)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax1.legend(fontsize=7)
    ax1.set_title(f"{len(entries)} published versions", fontsize=9)
    data = _figure_bytes(fig)
    plt.close(fig)
    return data


def _fronts_plot(fronts: list[dict[str, Any]], quality: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
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
        for r in pts if now else []:
            xy = (r["size_bytes"], r["quality"])
            ax.annotate(r["artifact"], xy, textcoords="offset points", xytext=(5, 4), fontsize=7)
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


def _interval(iv: dict[str, float]) -> str:
    return f"{iv['estimate']:+.4f} [{iv['low']:+.4f}, {iv['high']:+.4f}]"


def _intervals_table(metrics: dict[str, Any]) -> str:
    """Each artifact's change against fp32 per metric, with its paired bootstrap interval
    (empty when the kind's metrics have no per-example form)."""
    names = sorted({q for m in metrics.values() for q in m.get("intervals", {})})
    if not names:
        return ""
    cells = []
    for s, m in metrics.items():
        ivs = m.get("intervals", {})
        row = "".join(
            f"<td>{ivs[q]['estimate']:+.4f} [{ivs[q]['low']:+.4f}, {ivs[q]['high']:+.4f}]</td>"
            if q in ivs
            else "<td></td>"
            for q in names
        )
        cells.append(f"<tr><td>{html.escape(s)}</td>{row}</tr>" if ivs else "")
    conf = next(iv["confidence"] for m in metrics.values() for iv in m.get("intervals", {}).values())
    head = "".join(f"<th>{html.escape(q)}</th>" for q in names)
    return (f"<p>Change against fp32, with its {conf:.0%} paired bootstrap interval over the evaluation examples:</p>"
            f"<table><tr><th>artifact</th>{head}</tr>{''.join(cells)}</table>")  # fmt: skip


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
    and earlier runs, ``trials`` the search's trials, ``chosen`` the selection."""
    import matplotlib

    matplotlib.use("Agg")
    columns = project.kind(model).quality_columns(project, model)
    quality = columns[0]
    pick, why = (chosen or {}).get("selected"), (chosen or {}).get("why", "no selection")
    figures = {
        "pareto_size": _pareto(metrics, "size_bytes", "ONNX size (bytes, log)", quality, pick, True),
        "pareto_latency": _pareto(metrics, "p50_ms", "p50 latency (ms, serving batch)", quality, pick, False),
        "layers": _layers(project, model),
    }
    if entries:
        figures["history"] = _history_plot(entries, quality)
    if fronts:
        figures["pareto_runs"] = _fronts_plot(fronts, quality)
    if trials and any(t["status"] in ("passed", "failed") for t in trials):
        figures["search_trials"] = _trials_plot(trials, quality)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for name, data in figures.items():
        (out / "plots" / f"{name}.png").write_bytes(data)
    cols = ["size_bytes", "ratio_vs_fp32", "package_bytes", "transfer_ratio", "package_quality", "entropy_bound_bytes"]
    cols += ["package_vs_bound", *columns, "mdl_bits", "p50_ms"]
    cols += ["speedup_vs_fp32", "load_ms", "model_rss_mb"]
    rows = "".join(
        "<tr>"
        + f"<td>{'fp32' if s == 'baseline' else s}{' ★' if s == pick else ''}</td>"
        + "".join(f"<td>{'n/a' if metrics[s][c] is None else format(metrics[s][c], ',')}</td>" for c in cols)
        + f"<td>{html.escape(metrics[s]['uri'] or ('reference' if s == 'baseline' else 'not published'))}</td></tr>"
        for s in metrics
    )
    ci = _intervals_table(metrics)
    imgs = "".join(
        f'<figure><img alt="{n}" src="data:image/png;base64,{base64.b64encode(d).decode()}">'
        f"<figcaption>{n.replace('_', ' ')}</figcaption></figure>"
        for n, d in figures.items()
    )
    skipped = "".join(
        f"<li><b>{html.escape(s)}</b>: {html.escape(why)}</li>" for s, why in project.skipped(model).items()
    )
    skipped = f"<p>Techniques skipped for this model:</p><ul>{skipped}</ul>" if skipped else ""
    split = project.stage_dir(model, "baseline") / "split.json"  # custom models only
    if split.is_file() and json.loads(split.read_text()).get("synthetic"):
        skipped += (
            "<p><b>No evaluation data:</b> quality is agreement with fp32 on samples drawn from the "
            "declared input spec. It checks shapes and numerics only, not task quality.</p>"
        )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(model)} compression report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;font-size:12px}}td:last-child{{word-break:break-all;max-width:260px}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,td:last-child{{text-align:left}}
figure{{display:inline-block;margin:1em 1em 0 0}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(model)} ({html.escape(project.kind_name(model))}), pool {html.escape(pool)}</h1>
<p>Selected artifact: <b>{html.escape(pick or "none")}</b> ({html.escape(why)}).
{len(entries)} version(s) published on this pool so far.</p>
{skipped}
<table><tr><th>artifact</th>{"".join(f"<th>{c}</th>" for c in cols)}<th>published</th></tr>{rows}</table>
{ci}
{imgs}</body></html>
"""
    (out / "report.html").write_text(page)
    return out / "report.html"
