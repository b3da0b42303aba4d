"""The selection policy: which of several passing artifacts serving should take.

``smallest`` (ONNX bytes), ``fastest`` (p50 at the serving batch) or ``mdl`` (minimum
description length: the model's coded bytes plus the evaluation labels' code length; it
needs no hand-set trade-off between size and quality). Where a task has no labels to code
(sentence embeddings), ``mdl`` ranks by the model part alone, and says so. Ties go to the
first name in sort order. The recipe search picks its trial with it, the report its
published artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

POLICIES = ("smallest", "fastest", "mdl")


def check_policy(how: str) -> str:
    if how not in POLICIES:
        raise ValueError(f"selection must be one of {list(POLICIES)}, got {how!r}")
    return how


def select(candidates: Mapping[str, Mapping[str, Any]], how: str) -> tuple[str | None, str]:
    """``(name or None, why)``: the candidate policy ``how`` prefers. Each candidate has
    ``size_bytes``, ``p50_ms``, ``model_bytes`` (its coded size) and ``mdl_bits`` (None
    without labels)."""
    check_policy(how)
    if not candidates:
        return None, "no candidate passed"

    def best(key: str) -> str:
        return min(candidates, key=lambda name: (candidates[name][key], name))

    if how == "fastest":
        name = best("p50_ms")
        return name, f"fastest: p50 {candidates[name]['p50_ms']} ms"
    if how == "mdl" and all(c.get("mdl_bits") is not None for c in candidates.values()):
        name = best("mdl_bits")
        return name, f"minimum description length: {candidates[name]['mdl_bits']:,.0f} bits"
    if how == "mdl":
        name = best("model_bytes")
        size = candidates[name]["model_bytes"]
        return name, f"minimum description length without labels to code: the shortest model, {size:,} bytes"
    name = best("size_bytes")
    return name, f"smallest: {candidates[name]['size_bytes']:,} bytes"
