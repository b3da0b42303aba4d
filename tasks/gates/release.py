"""The release gate: Great Expectations on the table about to be published for one pool."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tasks.core.project import Project
from tasks.gates import expectations
from tasks.gates.tolerance import model_gates


def check(
    project: Project, model: str, names: list[str], rows: dict[str, dict[str, Any]], bench: dict[str, Any]
) -> dict[str, Any]:
    """Finite quality, every drop within tolerance, size and latency within the model's
    budgets, embedding norms within bounds of fp32's; raises ``QualityGateError`` naming
    the failed expectation. Returns its summary and its Data Docs site as
    ``{relative path: bytes}``."""
    serving = str(bench["serving_batch"])
    base = rows["baseline"]
    qcols = project.kind(model).quality_columns(project, model)
    table, held = [], set()
    for s in names:
        r = rows[s]
        row = {"artifact": s, "size_bytes": r["size_bytes"], "p50_ms": bench["results"][s][serving]["p50_ms"]}
        row.update({q: r[q] for q in qcols})
        # each artifact's drops against its own limits, as validate's judge computed them
        row.update({f"{m}_excess": r[f"{m}_drop"] - limit for m, limit in r["allowed_drops"].items()})
        held |= set(r["allowed_drops"])
        if "embedding_norm" in r and base.get("embedding_norm"):
            row["embedding_norm_ratio"] = r["embedding_norm"] / base["embedding_norm"]
        table.append(row)
    with tempfile.TemporaryDirectory(prefix="release-docs-") as tmp:
        site = Path(tmp) / "gx_docs"
        summary = expectations.check_release(table, qcols, sorted(held), model_gates(project, model), docs=site)
        files = {f.relative_to(site).as_posix(): f.read_bytes() for f in sorted(site.rglob("*")) if f.is_file()}
    return {"summary": summary, "site": files}
