"""Bootstrap confidence intervals for the regression gate.

``paired`` compares two models on the same evaluation examples: each resample draws one
set of example indices and computes both models' statistic on it, so the example-to-
example variation they share cancels. ``ratio_of_medians`` compares two independent
samples of latencies (per-round medians), resampled separately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray], float]  # example indices -> the metric on those examples


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided ``confidence`` interval [low, high]."""

    estimate: float
    low: float
    high: float
    confidence: float

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "confidence": self.confidence}


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn: two-sided ``confidence`` (default 0.95), ``resamples``
    (default 1000), and the resampling ``seed`` (default 0)."""

    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.confidence, self.resamples)

    def paired(self, stat_a: Statistic, stat_b: Statistic, n: int) -> Interval:
        return paired(stat_a, stat_b, n, self.resamples, self.confidence, self.seed)


def _check(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100 for a usable interval, got {resamples}")


def paired(
    stat_a: Statistic, stat_b: Statistic, n: int, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile-bootstrap interval of ``stat_a - stat_b`` over ``n`` shared examples."""
    _check(confidence, resamples)
    if n < 2:
        raise ValueError(f"need at least 2 examples, got {n}")
    rng = np.random.default_rng(seed)
    everything = np.arange(n)
    deltas = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, n, n)
        deltas[i] = stat_a(idx) - stat_b(idx)
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(deltas, [tail, 100 - tail])
    return Interval(float(stat_a(everything) - stat_b(everything)), float(low), float(high), confidence)


def ratio_of_medians(
    a: np.ndarray, b: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile-bootstrap interval of median(a) / median(b) for independent samples."""
    _check(confidence, resamples)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 timings per side, got {len(a)} and {len(b)}")
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("timings must be positive")
    rng = np.random.default_rng(seed)
    ratios = np.array([np.median(rng.choice(a, len(a))) / np.median(rng.choice(b, len(b))) for _ in range(resamples)])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Interval(float(np.median(a) / np.median(b)), float(low), float(high), confidence)
