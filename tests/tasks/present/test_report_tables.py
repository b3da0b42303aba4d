"""The report's text: the verdict at the top, the selection's sizes, why an artifact was not published."""

from __future__ import annotations

import html
from typing import Any

from tasks.present.report_tables import candidates, selection_note, verdict, why_not

URI = "s3://bucket/m/0123456789abcdef/local/{}/model.onnx"
MISSED = "accuracy dropped 0.0412 > tolerance 0.0300 (missed by 0.0112)"


def _row(size: int, package: int, uri: str = "", **extra: Any) -> dict[str, Any]:
    return {"size_bytes": size, "ratio_vs_fp32": 1.0, "package_bytes": package, "transfer_ratio": 1.0,
            "accuracy": 0.9, "p50_ms": 0.5, "speedup_vs_fp32": 1.0, "uri": uri, "passed": True, "reasons": [],
            **extra}  # fmt: skip


def _metrics(published: bool) -> dict[str, Any]:
    return {
        "baseline": _row(1000, 300),
        "quantize": _row(400, 350, URI.format("quantize") if published else "", int8_slower=not published),
        "recipe": _row(500, 20, URI.format("recipe") if published else "", passed=published),
        "distill": _row(450, 90, passed=False, int8_slower=True, reasons=[MISSED]),  # failing comes first
    }


def test_nothing_published_says_so_first_with_every_reason():
    page = verdict(_metrics(published=False), {"factorize": "skipped: not requested"}, "local")
    assert page.startswith('<div class="alert"><b>Nothing published</b> for pool local')
    assert "<b>quantize</b>: no: int8 slower than fp32 here" in page
    assert "<b>recipe</b>: no: failed tolerance</li>" in page  # no reason recorded: the status alone
    assert f"<b>distill</b>: no: failed tolerance: {html.escape(MISSED)}" in page
    assert "<b>factorize</b>: no: skipped: not requested" in page
    assert "Selected artifact: none" in selection_note(_metrics(published=False), {"selected": None})


def test_published_names_the_version_prefix_once_and_what_was_not():
    page = verdict(_metrics(published=True), {"search": "no trial passed (3 of 3 run); nearest miss: trial 0"}, "local")
    assert page.startswith('<div class="ok"><b>Published</b> 2 artifact(s): quantize, recipe')
    assert page.count("s3://bucket/m/0123456789abcdef/local/&lt;artifact&gt;/") == 1
    assert "Not published: distill (failed tolerance), search (no trial passed (3 of 3 run))" in page


def test_smallest_is_the_onnx_file_and_the_smaller_package_is_named():
    m = _metrics(published=True)
    note = selection_note(m, {"selected": "quantize", "policy": "smallest", "why": "smallest: 400 bytes"})
    assert "the published artifact with the fewest ONNX bytes (ONNX file 400 bytes, transfer package 350 bytes)" in note
    assert "By package size, recipe would be smallest (20 bytes)" in note
    fastest = selection_note(m, {"selected": "recipe", "policy": "fastest", "why": "fastest: p50 0.5 ms"})
    assert "(fastest: p50 0.5 ms). ONNX file 500 bytes, transfer package 20 bytes.</p>" in fastest


def test_why_not_and_the_candidates_table():
    m = _metrics(published=True)
    assert why_not("baseline", m["baseline"]) == "reference" and why_not("recipe", m["recipe"]) == "published"
    inexact = {**m["recipe"], "package_exact": False, "package_passed": False}
    assert why_not("recipe", inexact) == "published (ONNX only: its package fails the tolerance)"
    table = candidates(
        m, ["accuracy"], {"recipe": "prune 80 % global → codebook"}, "recipe", {"teach": "skipped: no cache"}
    )
    assert '<tr class=pick><td class="a"><b>recipe</b> ★<div class="steps">prune 80 % global → codebook</div>' in table
    assert '<td class="n">1,000</td>' in table and '<td class="n">0.500</td>' in table  # bytes, p50 below 1 ms
    assert f"no: failed tolerance: {html.escape(MISSED)}" in table and "no: skipped: no cache" in table
