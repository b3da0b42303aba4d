"""The selection policy: which published artifact serving takes (the library's ``select``,
as the report applies it)."""

import pytest

from model_compression.search.select import select


def _m(size, p50, package, mdl):
    return {"size_bytes": size, "p50_ms": p50, "model_bytes": package, "mdl_bits": mdl}


PUBLISHED = {
    "prune": _m(1000, 1.0, 100, 1200.0),
    "quantize": _m(250, 0.5, 280, 2500.0),
    "distill": _m(240, 0.3, 80, 1300.0),
}


def test_each_policy_picks_its_candidate_and_says_why():
    assert select(PUBLISHED, "smallest") == ("distill", "smallest: 240 bytes")
    assert select(PUBLISHED, "fastest") == ("distill", "fastest: p50 0.3 ms")
    assert select(PUBLISHED, "mdl") == ("prune", "minimum description length: 1,200 bits")


def test_ties_go_to_the_first_name():
    tied = {"b": _m(10, 1.0, 5, None), "a": _m(10, 1.0, 5, None)}
    assert select(tied, "smallest")[0] == "a"


def test_mdl_without_labels_ranks_by_the_model_bytes_and_says_so():
    no_labels = {k: {**v, "mdl_bits": None} for k, v in PUBLISHED.items()}
    name, why = select(no_labels, "mdl")
    assert name == "distill" and "without labels to code" in why


def test_no_candidate_and_an_unknown_policy():
    assert select({}, "smallest") == (None, "no candidate passed")
    with pytest.raises(ValueError, match=r"selection must be one of \['smallest', 'fastest', 'mdl'\], got 'best'"):
        select(PUBLISHED, "best")
