"""The Pareto front over candidates: no other candidate is at least as good on every
objective and better on one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

Direction = Literal["min", "max"]


def dominates(a: Mapping[str, Any], b: Mapping[str, Any], objectives: Mapping[str, Direction]) -> bool:
    """Whether ``a`` is no worse than ``b`` on every objective and better on at least one."""
    better = False
    for key, way in objectives.items():
        x, y = float(a[key]), float(b[key])
        if way == "max":
            x, y = -x, -y
        if x > y:
            return False
        better = better or x < y
    return better


def front(points: Sequence[Mapping[str, Any]], objectives: Mapping[str, Direction]) -> list[bool]:
    """For each point, whether it is on the Pareto front of ``points`` (O(n^2), n small)."""
    if not objectives:
        raise ValueError("front: need at least one objective")
    for key, way in objectives.items():
        if way not in ("min", "max"):
            raise ValueError(f"front: objective {key!r} must be 'min' or 'max', got {way!r}")
    return [not any(dominates(q, p, objectives) for q in points if q is not p) for p in points]


# The front the pipeline keeps: smaller, better and faster artifacts.
OBJECTIVES: dict[str, Direction] = {"size_bytes": "min", "quality": "max", "p50_ms": "min"}


def pareto_points(points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``points`` (each with ``size_bytes``, ``quality``, ``p50_ms``) with ``on_front``
    set: whether no other point is at least as small, good and fast, and better on one."""
    on = front(points, OBJECTIVES) if points else []
    return [{**p, "on_front": keep} for p, keep in zip(points, on, strict=True)]
