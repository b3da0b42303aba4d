"""The quality of one artifact: aggregate metrics, and the headline as a function of the
evaluation examples, so that one evaluator serves the tolerance gate (aggregates) and the
regression gate (a paired bootstrap over the same examples)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Statistic = Callable[[np.ndarray], float]  # example indices -> the metric on those examples


@dataclass(frozen=True)
class Evaluation:
    """Attributes:
    metrics: ``{name: value}``, headline first.
    outputs: what later artifacts are compared with (logits, embeddings).
    headline: the metric ``statistic`` computes, or None where the task has no per-example
        form (then the regression gate compares latency only).
    statistic: the headline on a subset of examples (indices into ``examples``).
    examples: how many examples ``statistic`` draws from.
    per_metric: ``{metric: (statistic, examples)}`` for every metric with a per-example
        form (the headline's included): what bootstrap intervals against fp32 resample.
    """

    metrics: dict[str, float]
    outputs: np.ndarray
    headline: str | None = None
    statistic: Statistic | None = None
    examples: int = 0
    per_metric: dict[str, tuple[Statistic, int]] = field(default_factory=dict)

    def statistics(self) -> dict[str, tuple[Statistic, int]]:
        """Every per-example form: ``per_metric``, or the headline's alone."""
        if self.per_metric:
            return dict(self.per_metric)
        if self.headline is None or self.statistic is None:
            return {}
        return {self.headline: (self.statistic, self.examples)}


def mean_of(values: np.ndarray) -> Statistic:
    """Mean of per-example ``values`` (hits of an accuracy, say) over the chosen examples."""
    v = np.asarray(values, dtype=np.float64)
    return lambda idx: float(v[idx].mean())


def pearson_of(predicted: np.ndarray, target: np.ndarray) -> Statistic:
    """Pearson r of ``predicted`` against ``target`` over the chosen pairs."""
    return lambda idx: float(np.corrcoef(predicted[idx], target[idx])[0, 1])


def spearman_of(predicted: np.ndarray, target: np.ndarray) -> Statistic:
    """Spearman rho of ``predicted`` against ``target`` over the chosen pairs."""
    from scipy.stats import spearmanr

    return lambda idx: float(spearmanr(predicted[idx], target[idx]).statistic)
