"""The tolerance gate: each artifact's quality drop against fp32, within the entry's
``tolerance`` (a number is an absolute drop, ``{relative: r}`` a drop of r x |fp32 value|),
and the model's release budgets in ``gates:``."""

from __future__ import annotations

from typing import Any

from model_compression.search.space import allowed_drop, shortfall
from tasks.core.project import Project

Tolerance = float | dict[str, float]  # absolute drop, or {"relative": r}
GATE_KEYS = ("calibration_sha256", "max_size_bytes", "max_p50_ms")


def tolerance(project: Project, model: str) -> dict[str, Tolerance]:
    """``{metric: max drop}`` from ``models.<model>.tolerance``: a number is an absolute
    drop against fp32, ``{relative: r}`` a drop of r x |fp32 value| (r = 0.01: 1 %)."""
    tol = project.entry(model).get("tolerance") or {}
    if not isinstance(tol, dict):
        raise ValueError(f"{model}.tolerance must be a mapping of metric -> max drop, got {tol!r}")
    known = project.kind(model).quality_columns(project, model)
    unknown = sorted(set(tol) - set(known))
    if unknown:
        raise ValueError(f"{model}.tolerance: unknown metric(s) {unknown}; known: {known}")
    out: dict[str, Tolerance] = {}
    for k, v in tol.items():
        if isinstance(v, dict):
            r = v.get("relative")
            if set(v) != {"relative"} or not isinstance(r, int | float) or not 0 <= r <= 1:
                raise ValueError(
                    f"{model}.tolerance.{k} must be a number or {{relative: r}} with r in [0, 1], got {v!r}"
                )
            out[k] = {"relative": float(r)}
        elif not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{model}.tolerance.{k} must be a non-negative number, got {v!r}")
        else:
            out[k] = float(v)
    return out


def allowed(tol: dict[str, Tolerance], base: dict[str, Any]) -> dict[str, float]:
    """``{metric: largest allowed drop}`` against the fp32 row ``base``."""
    return {metric: allowed_drop(spec, base[metric]) for metric, spec in tol.items()}


def judge(rows: list[dict[str, Any]], tol: dict[str, Tolerance]) -> None:
    """Mark each row passed/failed against the baseline row (the first), with reasons, in place."""
    base = rows[0]
    limits = allowed(tol, base)
    for row in rows:
        drops = {metric: base[metric] - row[metric] for metric in tol}
        for metric, drop in drops.items():
            row[f"{metric}_drop"] = drop
        excess, reasons = shortfall(drops, limits)
        row["ratio_vs_fp32"] = base["size_bytes"] / row["size_bytes"]
        row["passed"] = not reasons
        row["reasons"] = reasons
        row["shortfall"] = excess


def model_gates(project: Project, model: str) -> dict[str, Any]:
    """``gates.<model>`` of params.yaml: the calibration set's pinned sha256 and the size
    (bytes) and p50 latency (ms, serving batch) budgets; each optional."""
    section = project.params.get("gates") or {}
    if not isinstance(section, dict):
        raise ValueError(f"params.yaml gates must be a mapping of model -> gate settings, got {section!r}")
    found = section.get(model) or {}
    unknown = sorted(set(found) - set(GATE_KEYS))
    if unknown:
        raise ValueError(f"gates.{model}: unknown field(s) {unknown}; allowed: {list(GATE_KEYS)}")
    for key in ("max_size_bytes", "max_p50_ms"):
        if key in found and (not isinstance(found[key], int | float) or found[key] <= 0):
            raise ValueError(f"gates.{model}.{key} must be a positive number, got {found[key]!r}")
    return dict(found)
