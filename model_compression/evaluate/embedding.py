"""Quality of sentence embeddings: Lee similarity correlation, polarity probe, word-pair
Spearman (WordSim-353), cosine to fp32."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Embed = Callable[[list[str]], np.ndarray]


def embed_all(embed: Embed, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Embed ``texts`` in batches with ``embed`` -> float32 (N, D)."""
    return np.concatenate([embed(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])


def lee_pearson(embeddings: np.ndarray, human: np.ndarray) -> float:
    """Pearson r between embedding cosines and human similarities over pairs i < j."""
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    iu = np.triu_indices(len(e), 1)
    return float(np.corrcoef((e @ e.T)[iu], human[iu])[0, 1])


def probe_hits(embeddings: np.ndarray, labels: np.ndarray, folds: int = 10, seed: int = 0) -> np.ndarray:
    """Per example, 1.0 where a logistic-regression probe on frozen embeddings, trained on
    the other k-1 folds, labels it right (k-fold cross-validated predictions)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(LogisticRegression(max_iter=2000), embeddings, labels, cv=cv)
    return (predicted == np.asarray(labels)).astype(np.float64)


def probe_accuracy(embeddings: np.ndarray, labels: np.ndarray, folds: int = 10, seed: int = 0) -> float:
    """k-fold cross-validated accuracy of a logistic-regression probe on frozen embeddings
    (pooled over the examples; equal to the mean fold accuracy when folds are equal)."""
    return float(probe_hits(embeddings, labels, folds, seed).mean())


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row-wise cosine similarity of two (N, D) arrays."""
    if a.shape != b.shape:
        raise ValueError(f"embedding shapes differ: {a.shape} vs {b.shape}")
    na = a / np.linalg.norm(a, axis=1, keepdims=True)
    nb = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((na * nb).sum(1).mean())


def pair_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row pair ``a[i]``, ``b[i]``."""
    na = a / np.linalg.norm(a, axis=1, keepdims=True)
    nb = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((na * nb).sum(1))


def pair_spearman(a: np.ndarray, b: np.ndarray, human: np.ndarray) -> float:
    """Spearman rank correlation between the cosines of rows ``a[i]``, ``b[i]`` and
    ``human[i]``; 0.0 when the cosines are all equal to within 1e-9 (they rank nothing)."""
    from scipy.stats import spearmanr

    cos = pair_cosines(a, b)
    if np.ptp(cos) < 1e-9:
        return 0.0
    return float(spearmanr(cos, human).statistic)
