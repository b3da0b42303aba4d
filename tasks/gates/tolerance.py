"""The tolerance gate: each artifact's quality drop against fp32, within its tolerance,
and the model's release budgets in ``gates:``.

A tolerance maps a quality metric to the largest drop allowed against fp32:
- a number: an absolute drop (``lee_pearson: 0.03``);
- ``{relative: r}``: a drop of r x |fp32 value| (r = 0.01: 1 %);
- ``interval``: no significant drop: the paired bootstrap interval of (artifact - fp32)
  over the evaluation examples, at ``regression.confidence``, must reach 0. For a metric
  on few examples (200 polarity sentences: 1 % is 2 of them) a fixed margin is noise.

An artifact of a recipe with its own ``tolerance`` (params.yaml ``recipes.<name>``) is held
to that one; every other artifact to the entry's ``models.<model>.tolerance``.
"""

from __future__ import annotations

from typing import Any

from model_compression.search.space import allowed_drop, shortfall
from tasks.core.project import Project

Tolerance = float | dict[str, float] | str  # absolute drop, {"relative": r}, or "interval"
GATE_KEYS = ("calibration_sha256", "max_size_bytes", "max_p50_ms")
INTERVAL = "interval"


def parse(spec: Any, known: list[str], where: str) -> dict[str, Tolerance]:
    """``{metric: tolerance}`` from a params.yaml mapping at ``where``, metrics from ``known``."""
    spec = spec or {}
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a mapping of metric -> max drop, got {spec!r}")
    unknown = sorted(set(spec) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown metric(s) {unknown}; known: {known}")
    out: dict[str, Tolerance] = {}
    for k, v in spec.items():
        if v == INTERVAL:
            out[k] = INTERVAL
        elif isinstance(v, dict):
            r = v.get("relative")
            if set(v) != {"relative"} or not isinstance(r, int | float) or not 0 <= r <= 1:
                raise ValueError(
                    f"{where}.{k} must be a number, {{relative: r}} with r in [0, 1] or 'interval', got {v!r}"
                )
            out[k] = {"relative": float(r)}
        elif not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{where}.{k} must be a non-negative number, {{relative: r}} or 'interval', got {v!r}")
        else:
            out[k] = float(v)
    return out


def tolerance(project: Project, model: str, artifact: str | None = None) -> dict[str, Tolerance]:
    """The tolerance ``artifact`` is held to (default: the entry's, ``models.<model>.tolerance``);
    a recipe's artifact with its own ``tolerance`` gets that one."""
    known = project.kind(model).quality_columns(project, model)
    recipe = project.recipe_spec(model, artifact) if artifact in project.recipe_names(model) else {}
    if "tolerance" in recipe:
        return parse(recipe["tolerance"], known, f"recipes.{artifact}.tolerance")
    return parse(project.entry(model).get("tolerance"), known, f"{model}.tolerance")


def allowed(tol: dict[str, Tolerance], base: dict[str, Any], row: dict[str, Any] | None = None) -> dict[str, float]:
    """``{metric: largest allowed drop}`` of ``row`` against the fp32 row ``base``. An
    ``interval`` metric allows the drop when the row's interval of (row - fp32) reaches 0,
    i.e. up to drop + its upper end; without an interval (the baseline row) it allows none."""
    out = {}
    for metric, spec in tol.items():
        if spec == INTERVAL:
            iv = (row or {}).get("intervals", {}).get(metric)
            out[metric] = 0.0 if iv is None else base[metric] - (row or base)[metric] + iv["high"]
        else:
            assert not isinstance(spec, str)
            out[metric] = allowed_drop(spec, base[metric])
    return out


def judge(rows: list[dict[str, Any]], tol: dict[str, Tolerance], per_artifact: dict[str, Any] | None = None) -> None:
    """Mark each row passed/failed against the baseline row (the first), with reasons, in
    place; a row named in ``per_artifact`` is held to that tolerance instead of ``tol``.
    Each row keeps its limits (``allowed_drops``) for the release gate."""
    base = rows[0]
    for row in rows:
        own = (per_artifact or {}).get(row["artifact"], tol)
        limits = allowed(own, base, row)
        drops = {metric: base[metric] - row[metric] for metric in own}
        for metric, drop in drops.items():
            row[f"{metric}_drop"] = drop
        excess, reasons = shortfall(drops, limits)
        row["ratio_vs_fp32"] = base["size_bytes"] / row["size_bytes"]
        row["allowed_drops"] = limits
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
