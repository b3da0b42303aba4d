"""The tolerance gate: absolute, relative and interval tolerances, per artifact."""

from __future__ import annotations

import pytest

from tasks.gates.tolerance import judge, parse

KNOWN = ["lee_pearson", "polarity_accuracy"]


def _rows() -> list[dict]:
    base = {"artifact": "baseline", "size_bytes": 100, "lee_pearson": 0.60, "polarity_accuracy": 0.75}
    ok = {
        "artifact": "a",
        "size_bytes": 10,
        "lee_pearson": 0.595,
        "polarity_accuracy": 0.72,
        "intervals": {"polarity_accuracy": {"estimate": -0.03, "low": -0.07, "high": 0.01, "confidence": 0.95}},
    }
    bad = {
        "artifact": "b",
        "size_bytes": 10,
        "lee_pearson": 0.61,
        "polarity_accuracy": 0.70,
        "intervals": {"polarity_accuracy": {"estimate": -0.05, "low": -0.09, "high": -0.01, "confidence": 0.95}},
    }
    return [base, ok, bad]  # fmt: skip


def test_an_interval_tolerance_passes_exactly_when_the_interval_reaches_zero():
    rows = _rows()
    judge(rows, parse({"lee_pearson": {"relative": 0.01}, "polarity_accuracy": "interval"}, KNOWN, "t"))
    assert [r["passed"] for r in rows] == [True, True, False]
    assert rows[2]["reasons"] == ["polarity_accuracy dropped 0.0500 > tolerance 0.0400 (missed by 0.0100)"]
    assert rows[1]["allowed_drops"]["lee_pearson"] == pytest.approx(0.006)  # 1 % of 0.60
    assert rows[1]["allowed_drops"]["polarity_accuracy"] == pytest.approx(0.04)  # drop 0.03 + the upper end 0.01


def test_an_artifact_named_in_per_artifact_is_held_to_its_own_tolerance():
    rows = _rows()
    strict = parse({"lee_pearson": 0.0}, KNOWN, "t")
    judge(rows, parse({"polarity_accuracy": 0.1}, KNOWN, "t"), {"a": strict})
    assert rows[1]["passed"] is False and rows[1]["reasons"][0].startswith("lee_pearson dropped 0.0050")
    assert rows[2]["passed"] is True and set(rows[2]["allowed_drops"]) == {"polarity_accuracy"}


def test_a_malformed_tolerance_is_named():
    with pytest.raises(ValueError, match=r"t.lee_pearson must be a number, \{relative: r\} with r in \[0, 1\] or"):
        parse({"lee_pearson": {"relative": 2}}, KNOWN, "t")
    with pytest.raises(ValueError, match=r"t: unknown metric\(s\) \['accuracy'\]"):
        parse({"accuracy": 0.1}, KNOWN, "t")
    with pytest.raises(ValueError, match=r"t.lee_pearson must be a non-negative number"):
        parse({"lee_pearson": "intervals"}, KNOWN, "t")


def test_a_drop_equal_to_its_tolerance_passes_despite_float_error():
    rows = [
        {"artifact": "baseline", "size_bytes": 100, "lee_pearson": 0.6, "polarity_accuracy": 0.75},
        {"artifact": "a", "size_bytes": 10, "lee_pearson": 0.6, "polarity_accuracy": 0.72},
    ]
    assert 0.75 - 0.72 > 0.03  # in binary floating point
    judge(rows, parse({"polarity_accuracy": 0.03}, KNOWN, "t"))
    assert rows[1]["passed"] and rows[1]["shortfall"] == 0
