"""Quality of classifiers: accuracy, agreement with fp32, and the data's code length."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of inputs whose top-1 class matches the reference model's."""
    return float((logits.argmax(1) == reference.argmax(1)).mean())


def nll_nats(logits: np.ndarray, labels: np.ndarray) -> float:
    """Summed negative log-likelihood of ``labels``, in nats: L(data | model) for MDL."""
    return float(-log_softmax(logits.astype(np.float64))[np.arange(len(labels)), labels].sum())
