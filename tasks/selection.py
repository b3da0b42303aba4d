"""Which published artifact serving should take: the selection policy in params.yaml.

``selection: smallest`` (ONNX bytes), ``fastest`` (p50 at the serving batch) or ``mdl``
(minimum description length: package bits + the eval labels' NLL bits; it needs no
hand-set trade-off between size and quality). Only artifacts that passed every gate and
were published are candidates. Where a task has no labels to code (sentence embeddings),
``mdl`` ranks by the model part alone, the package bits, and says so.
"""

from __future__ import annotations

from typing import Any

from tasks.project import Project

POLICIES = ("smallest", "fastest", "mdl")


def policy(project: Project) -> str:
    value = project.params.get("selection", "smallest")
    if value not in POLICIES:
        raise ValueError(f"params.yaml selection must be one of {list(POLICIES)}, got {value!r}")
    return str(value)


def select(metrics: dict[str, dict[str, Any]], how: str) -> tuple[str | None, str]:
    """``(artifact or None, why)`` under policy ``how`` among the published artifacts."""
    if how not in POLICIES:
        raise ValueError(f"selection must be one of {list(POLICIES)}, got {how!r}")
    published = {s: m for s, m in metrics.items() if s != "baseline" and m.get("uri")}
    if not published:
        return None, "nothing was published"
    if how == "fastest":
        name = min(published, key=lambda s: (published[s]["p50_ms"], s))
        return name, f"fastest published: p50 {published[name]['p50_ms']} ms"
    if how == "mdl" and all(m.get("mdl_bits") is not None for m in published.values()):
        name = min(published, key=lambda s: (published[s]["mdl_bits"], s))
        return name, f"minimum description length: {published[name]['mdl_bits']:,.0f} bits"
    if how == "mdl":
        name = min(published, key=lambda s: (published[s]["package_bytes"], s))
        return name, "minimum description length without labels to code: the shortest package"
    name = min(published, key=lambda s: (published[s]["size_bytes"], s))
    return name, f"smallest published: {published[name]['size_bytes']:,} bytes"
