"""The HTML report: figures, table, upload beside the version, and how it renders."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.core.project import Project
from tasks.storage import s3 as s3io
from tests.conftest import run_until

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


WIDTH = 1280  # the window the report must fit: no horizontal scrolling, every figure inside

# Runs after the page and its images have loaded: the layout a person sees, as JSON in the DOM.
MEASURE = """<script>window.addEventListener("load", () => {
  const right = q => [...document.querySelectorAll(q)].map(e => e.getBoundingClientRect().right);
  const m = document.createElement("pre");
  m.id = "measure";
  m.textContent = JSON.stringify({inner_width: window.innerWidth, scroll_width: document.documentElement.scrollWidth,
    images: right("img"), loaded: [...document.images].map(i => i.complete && i.naturalWidth > 0),
    tables: right("table")});
  document.body.appendChild(m);
});</script>"""


def _chromium(profile: Path, height: int) -> list[str]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (scripts/bootstrap.sh installs it)")
    return [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}"]


def screenshot(page: Path, out: Path, profile: Path) -> Image.Image:
    cmd = _chromium(profile, 1800)
    subprocess.run([*cmd, f"--screenshot={out}", page.as_uri()], capture_output=True, timeout=120, check=True)
    return Image.open(out).convert("L")


def measure(page: Path, work: Path) -> dict:
    """The rendered page's widths in a ``WIDTH`` px window: a copy of ``page`` with ``MEASURE``
    in it, loaded by headless Chromium, its DOM dumped once loaded."""
    probe = work / "measured.html"
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    cmd = [*_chromium(work / "profile", 800), "--dump-dom", probe.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r'<pre id="measure">(.*?)</pre>', dom)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))


def test_report_has_every_candidate_the_figures_and_is_uploaded(tiny_built: Path, tmp_path: Path):
    run_until(tiny_built, "tiny-cnn", "report")
    p = Project.at(tiny_built)
    out = p.stage_dir("tiny-cnn", "report")
    page = (out / "report.html").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    chosen = json.loads((out / "selection.json").read_text())
    for name in ("fp32", *p.artifact_names("tiny-cnn")[1:]):
        assert f"<b>{name}</b>" in page
    # the verdict first, then the selection with both of its sizes, then the tables
    shipped = [s for s in p.artifact_names("tiny-cnn") if s in metrics and metrics[s]["uri"]]
    verdict = f'<div class="ok"><b>Published</b> {len(shipped)} artifact(s): {", ".join(shipped)}, under <code>s3://'
    assert len(shipped) >= 5 and page.index(verdict) < page.index("<b>Selected artifact")
    pick = metrics[chosen["selected"]]
    assert (f"<b>Selected artifact: {chosen['selected']}</b>, by params.yaml <code>selection: smallest</code>: the "
            f"published artifact with the fewest ONNX bytes (ONNX file {pick['size_bytes']:,} bytes, transfer "
            f"package {pick['package_bytes']:,} bytes)") in page  # fmt: skip
    assert page.index("<b>Selected artifact") < page.index("<h2>Candidates") and "1 version(s) published" in page
    # each artifact labelled with its recipe steps or technique, and published or why not
    assert '<div class="steps">prune_channels 50 % → finetune 1 ep → prune 60 % → kmeans 3 bits → codebook' in page
    assert '<div class="steps">int8 static, per-channel</div>' in page and "<th>published, or why not</th>" in page
    assert "Change against fp32, with its 95% paired bootstrap interval" in page  # accuracy, per image
    plots = {f.name: Image.open(f) for f in (out / "plots").glob("*.png")}
    assert set(plots) == {"pareto_size.png", "pareto_latency.png", "layers.png", "history.png",
                          "pareto_runs.png", "search_trials.png"}  # fmt: skip
    assert all(img.width > 400 and img.height > 200 for img in plots.values())
    assert page.count('src="data:image/png;base64,') == 6
    fronts = json.loads((out / "pareto.json").read_text())
    for s, m in metrics.items():  # every artifact but fp32 carries its interval against fp32
        iv = m["intervals"].get("accuracy")
        assert (iv is None) == (s == "baseline") and (s == "baseline" or iv["low"] <= iv["estimate"] <= iv["high"])
    # storage-only: sparse or shared weights (prune, the k-means'd recipe) and no faster than fp32
    for s, m in metrics.items():
        sparse = s in ("prune", "tiny-deep-compression")
        assert m["storage_only"] == (sparse and m["speedup_vs_fp32"] < 1.05), s
    published = {s for s, m in metrics.items() if s != "baseline" and m["uri"]}
    version = p.read_output("tiny-cnn", "publish", "published.json")["version"]
    assert {f["artifact"] for f in fronts} == published and {(f["run"], f["current"]) for f in fronts} == {
        (version[:8], True)
    }
    # nothing is smaller than the smallest, so one of them is on the front (the recipe's
    # thinned CNN and the distilled student can tie in size: then the better one is)
    least = min(metrics[s]["size_bytes"] for s in published)
    assert any(f["on_front"] for f in fronts if metrics[f["artifact"]]["size_bytes"] == least)

    version = p.read_output("tiny-cnn", "publish", "published.json")["version"]
    st = s3io.S3Settings.from_project(p)
    body = s3io.client(st).get_object(Bucket=st.publish_bucket, Key=f"tiny-cnn/{version}/local/report.html")
    assert body["Body"].read().decode() == page

    # Rendered as a person sees it, in a 1280 px window: nothing wider than the window (the
    # scrollbar may take some of it), every figure loaded and inside it.
    seen = measure(out / "report.html", tmp_path)
    assert seen["inner_width"] == WIDTH and seen["scroll_width"] <= WIDTH, seen
    assert len(seen["images"]) == 6 and all(seen["loaded"]) and max(seen["images"]) <= WIDTH, seen
    assert len(seen["tables"]) == 3 and max(seen["tables"]) <= WIDTH, seen
    # ... and a page with content, not an empty or broken one
    shot = np.asarray(screenshot(out / "report.html", tmp_path / "shot.png", tmp_path / "profile"))
    assert shot.shape == (1800, WIDTH)
    dark = (shot < 128).mean()
    assert 0.01 < dark < 0.5  # text, axes and bars on a white page
    assert (shot[:400] < 128).mean() > 0.005  # the title and the table are at the top
