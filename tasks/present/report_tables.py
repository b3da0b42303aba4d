"""The HTML report's text: the verdict at the top, the selection, and the tables.

Every function takes rows of the report stage's ``metrics.json`` and returns an HTML
fragment that fits a 1280 px wide window: numbers never wrap, names and reasons do,
and the URIs (one prefix per version) are given once, not per row.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from tasks.present.console import publish_status


def _name(s: str) -> str:
    return "fp32" if s == "baseline" else s


def _head(c: str) -> str:
    """A column name that may wrap at its underscores (``agreement_to_fp32``)."""
    return html.escape(c).replace("_", "_<wbr>")


def why_not(s: str, m: dict[str, Any]) -> str:
    """Whether artifact ``s`` was published, and if not why (``console.publish_status``),
    with the tolerance it missed; a published artifact whose transfer package decodes to a
    model that fails the tolerance is published as ONNX only."""
    status = publish_status(s, m)
    if not m["uri"] and m.get("reasons"):
        status += ": " + "; ".join(m["reasons"])
    elif m["uri"] and not m.get("package_exact", True) and not m.get("package_passed", True):
        status += " (ONNX only: its package fails the tolerance)"
    return status


def verdict(metrics: dict[str, Any], absent: dict[str, str], pool: str) -> str:
    """The first thing on the page: what was published under which prefix and what was not;
    when nothing was, ``Nothing published`` and each candidate's full reason. ``absent``:
    ``{artifact: why there is none}`` (``labels.absent``)."""
    published = [s for s in metrics if s != "baseline" and metrics[s]["uri"]]
    refused = {_name(s): why_not(s, m) for s, m in metrics.items() if s != "baseline" and not m["uri"]}
    refused.update({s: f"no: {why}" for s, why in absent.items()})
    if not published:
        reasons = "".join(f"<li><b>{html.escape(s)}</b>: {html.escape(why)}</li>" for s, why in refused.items())
        return (
            f'<div class="alert"><b>Nothing published</b> for pool {html.escape(pool)}: no artifact may be '
            f"published. Why, per artifact:<ul>{reasons or '<li>no artifact was produced</li>'}</ul></div>"
        )
    prefix = metrics[published[0]]["uri"].rsplit("/", 2)[0]  # s3://<bucket>/<model>/<version>/<pool>
    out = (
        f'<div class="ok"><b>Published</b> {len(published)} artifact(s): '
        f"{html.escape(', '.join(published))}, under <code>{html.escape(prefix)}/&lt;artifact&gt;/</code> "
        "(<code>model.onnx</code>, and <code>model.mcpk</code>: its transfer package)."
    )
    if refused:  # the short reason here, the full one in the table's last column
        short = (f"{s} ({re.split('[:;]', why.removeprefix('no: '))[0]})" for s, why in refused.items())
        out += f"<br>Not published: {html.escape(', '.join(short))}; why in full: the table's last column."
    return out + "</div>"


def selection_note(metrics: dict[str, Any], chosen: dict[str, Any]) -> str:
    """The artifact serving takes under the params' ``selection`` policy with both its sizes,
    and, for ``smallest``, which size that means (the ONNX file's) and why."""
    pick, how = chosen.get("selected"), chosen.get("policy", "")
    if not pick:
        return "<p><b>Selected artifact: none</b>: nothing was published, so serving keeps what it had.</p>"
    m = metrics[pick]
    head = f"<p><b>Selected artifact: {html.escape(pick)}</b>, by params.yaml <code>selection: {html.escape(how)}"
    head += "</code>"
    sizes = f"ONNX file {m['size_bytes']:,} bytes, transfer package {m['package_bytes']:,} bytes"
    if how != "smallest":
        return f"{head} ({html.escape(chosen.get('why', ''))}). {sizes}.</p>"
    published = {s: r for s, r in metrics.items() if s != "baseline" and r["uri"]}
    least = min(published, key=lambda s: (published[s]["package_bytes"], s))
    other = (
        "It has the smallest package too."
        if least == pick
        else f"By package size, {html.escape(least)} would be smallest ({published[least]['package_bytes']:,} bytes)."
    )
    return (
        f"{head}: the published artifact with the fewest ONNX bytes ({sizes}).<br>"
        "Why ONNX bytes: <code>selection.json</code> points serving at the ONNX file, which is what serving "
        "downloads (<code>fetch_published</code>) and loads. The package (.mcpk) is an optional entropy-coded "
        "download that decodes back to the model, and is not uploaded for an artifact whose decoded package "
        f"fails the tolerance. {other}</p>"
    )


def _ms(v: float) -> str:
    """Milliseconds: two decimals, or three decimals below 1 ms (a tiny model's)."""
    return f"{v:.2f}" if v >= 1 else f"{v:.3f}"


Format = str | Callable[[float], str]  # a format spec, or a function of the value
Column = tuple[str, str, Format]  # (header, metrics.json key, format)


def _cell(v: Any, fmt: Format) -> str:
    if v is None:
        return '<td class="n">n/a</td>'
    return f'<td class="n">{fmt(v) if callable(fmt) else format(v, fmt)}</td>'


def candidates(
    metrics: dict[str, Any], quality: list[str], labels: dict[str, str], pick: str | None, absent: dict[str, str]
) -> str:
    """One row per candidate: what it is (its recipe steps or technique), sizes and ratios
    against the fp32 ONNX file, quality, p50 at the serving batch, published or why not;
    then one row per artifact that is not there (``absent``: why)."""
    cols: list[Column] = [
        ("ONNX bytes", "size_bytes", ","), ("× smaller", "ratio_vs_fp32", ".2f"),
        ("package bytes", "package_bytes", ","), ("× smaller (transfer)", "transfer_ratio", ".2f"),
        *((q, q, ".4f") for q in quality), ("p50 ms", "p50_ms", _ms), ("speed-up", "speedup_vs_fp32", ".2f"),
    ]  # fmt: skip
    rows = []
    for s, m in metrics.items():
        star = " ★" if s == pick else ""
        label = f'<div class="steps">{html.escape(labels.get(s, ""))}</div>' if labels.get(s) else ""
        rows.append(
            f'<tr{" class=pick" if s == pick else ""}><td class="a"><b>{html.escape(_name(s))}</b>{star}{label}</td>'
            + "".join(_cell(m[key], fmt) for _, key, fmt in cols)
            + f'<td class="why">{html.escape(why_not(s, m))}</td></tr>'
        )
    rows += [
        f'<tr><td class="a"><b>{html.escape(s)}</b></td><td colspan="{len(cols)}" class="skip">—</td>'
        f'<td class="why">no: {html.escape(why)}</td></tr>'
        for s, why in absent.items()
    ]
    head = "".join(f"<th>{_head(h)}</th>" for h, _, _ in cols)
    return f'<table class="wide"><tr><th>artifact</th>{head}<th>published, or why not</th></tr>{"".join(rows)}</table>'


def details(metrics: dict[str, Any], quality: list[str]) -> str:
    """The package against its entropy bound, what an inexact package decodes to, the
    description length, tail latency, load time and memory."""
    cols: list[Column] = [
        ("entropy bound bytes", "entropy_bound_bytes", ","), ("package / bound", "package_vs_bound", ".4f"),
        (f"package {quality[0]}", "package_quality", ".4f"), ("MDL bits", "mdl_bits", ",.0f"),
        ("p95 ms", "p95_ms", _ms), ("p99 ms", "p99_ms", _ms), ("load ms", "load_ms", ",.1f"),
        ("model RSS MiB", "model_rss_mb", ",.1f"),
    ]  # fmt: skip
    rows = "".join(
        f'<tr><td class="a">{html.escape(_name(s))}</td>' + "".join(_cell(m.get(k), f) for _, k, f in cols) + "</tr>"
        for s, m in metrics.items()
    )
    head = "".join(f"<th>{_head(h)}</th>" for h, _, _ in cols)
    return f"<table><tr><th>artifact</th>{head}</tr>{rows}</table>"


def intervals(metrics: dict[str, Any]) -> str:
    """Each artifact's change against fp32 per metric, with its paired bootstrap interval
    (empty when the kind's metrics have no per-example form)."""
    names = sorted({q for m in metrics.values() for q in m.get("intervals", {})})
    if not names:
        return ""
    cells = []
    for s, m in metrics.items():
        ivs = m.get("intervals", {})
        row = "".join(
            f'<td class="n">{ivs[q]["estimate"]:+.4f} [{ivs[q]["low"]:+.4f}, {ivs[q]["high"]:+.4f}]</td>'
            if q in ivs
            else "<td></td>"
            for q in names
        )
        cells.append(f'<tr><td class="a">{html.escape(s)}</td>{row}</tr>' if ivs else "")
    conf = next(iv["confidence"] for m in metrics.values() for iv in m.get("intervals", {}).values())
    head = "".join(f"<th>{_head(q)}</th>" for q in names)
    return (f"<p>Change against fp32, with its {conf:.0%} paired bootstrap interval over the evaluation examples:</p>"
            f"<table><tr><th>artifact</th>{head}</tr>{''.join(cells)}</table>")  # fmt: skip
