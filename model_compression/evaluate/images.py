"""The image classifier's quality suite on an ONNX artifact: accuracy on a split (the
official 10k Fashion-MNIST test split, or the validation split carved from the training
images), top-1 agreement with fp32, and the labels' code length (NLL in bits, for minimum
description length)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_compression.datasets import fashion_mnist as fm
from model_compression.evaluate import classification as cls_eval
from model_compression.evaluate.result import Evaluation, mean_of
from model_compression.kinds.image_classifier import INPUT
from model_compression.runtime.session import run_batched


def onnx_logits(path: Path, x: np.ndarray, threads: int, batch_size: int = 500) -> np.ndarray:
    return run_batched(path, INPUT, x, threads, batch_size)


def evaluate(
    path: Path,
    data_dir: Path,
    threads: int,
    reference: np.ndarray | None,
    limit: int = 0,
    split: str = "test",
    validation: float = 0.0,
) -> Evaluation:
    """Quality of the ONNX classifier at ``path`` on ``split`` (``fashion_mnist.load_split``);
    its outputs are the logits and its headline, per image, is accuracy."""
    x, y = fm.load_split(data_dir, split, validation)
    if limit:
        x, y = x[:limit], y[:limit]
    logits = onnx_logits(path, fm.normalize(x), threads)
    metrics = {
        "accuracy": cls_eval.accuracy(logits, y),
        "agreement_to_fp32": 1.0 if reference is None else cls_eval.agreement(logits, reference),
        "nll_bits": cls_eval.nll_nats(logits, y) / np.log(2),
    }
    if not all(np.isfinite(v) for v in metrics.values()):
        raise ValueError(f"non-finite quality metrics for {path}: {metrics}")
    return Evaluation(metrics, logits, "accuracy", mean_of(logits.argmax(1) == y), len(y))
