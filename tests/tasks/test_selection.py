"""The selection policy: which published artifact serving takes."""

import pytest

from tasks.selection import select


def _m(size, p50, package, mdl, uri="s3://b/k"):
    return {"size_bytes": size, "p50_ms": p50, "package_bytes": package, "mdl_bits": mdl, "uri": uri}


METRICS = {
    "baseline": _m(1000, 1.0, 300, 3000.0, uri=""),
    "prune": _m(1000, 1.0, 100, 1200.0),
    "quantize": _m(250, 0.5, 280, 2500.0),
    "distill": _m(240, 0.3, 80, 1300.0),
    "factorize": _m(120, 0.9, 60, 900.0, uri=""),  # refused by a gate: never selected
}


def test_each_policy_picks_among_published_artifacts_only():
    assert select(METRICS, "smallest") == ("distill", "smallest published: 240 bytes")
    assert select(METRICS, "fastest") == ("distill", "fastest published: p50 0.3 ms")
    assert select(METRICS, "mdl") == ("prune", "minimum description length: 1,200 bits")


def test_mdl_without_labels_ranks_by_the_package_and_says_so():
    no_labels = {k: {**v, "mdl_bits": None} for k, v in METRICS.items()}
    name, why = select(no_labels, "mdl")
    assert name == "distill" and "without labels to code" in why


def test_nothing_published_and_an_unknown_policy():
    assert select({"baseline": METRICS["baseline"]}, "smallest") == (None, "nothing was published")
    with pytest.raises(ValueError, match=r"selection must be one of \['smallest', 'fastest', 'mdl'\], got 'best'"):
        select(METRICS, "best")
