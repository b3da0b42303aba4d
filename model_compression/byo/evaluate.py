"""Run an ONNX artifact on a custom model's examples and score it for the entry's task.

Quality metrics per task (the first is the headline the report plots; the kind adapter,
``tasks/kinds/custom.py``, lists them):

- classification: ``accuracy``, ``top{k}_accuracy``, ``agreement_to_fp32``, ``nll_bits``
  (the labels' code length given the model, for MDL);
- agreement: ``top1_agreement``, ``top{k}_agreement``, ``kl_to_fp32`` (mean nats per example);
- text-embedding: ``pairs_spearman`` (with the pairs' human scores), ``probe_accuracy`` (when
  a probe file is given), ``cosine_to_fp32``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model_compression.byo.data import Examples
from model_compression.byo.spec import EvalSpec, InputSpec
from model_compression.evaluate import classification as cls_eval
from model_compression.evaluate import embedding as emb_eval
from model_compression.evaluate.result import Evaluation, mean_of, spearman_of
from model_compression.runtime.session import check_inputs, make_session, run_batched


def run_tensor(path: Path, spec: InputSpec, x: np.ndarray, threads: int, batch_size: int) -> np.ndarray:
    """Outputs of the ONNX model at ``path`` on ``x``, in batches, as float64 (N, classes)."""
    return run_batched(path, spec.name, x, threads, batch_size).reshape(len(x), -1).astype(np.float64)


def run_text(path: Path, spec: InputSpec, texts: list[str], threads: int, batch_size: int) -> np.ndarray:
    """Sentence embeddings (N, D); token outputs (N, T, D) are mean-pooled over the mask."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(spec.tokenizer))
    session = make_session(path, threads)
    wanted = {i.name for i in session.get_inputs()}

    def embed(batch: list[str]) -> np.ndarray:
        enc = tok(batch, padding=True, truncation=True, max_length=spec.max_length, return_tensors="np")
        feeds = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in wanted}
        check_inputs(session, feeds)
        out = session.run(None, feeds)[0]
        if out.ndim == 3:
            mask = feeds["attention_mask"][..., None].astype(out.dtype)
            out = (out * mask).sum(1) / np.maximum(mask.sum(1), 1)
        return out

    return emb_eval.embed_all(embed, texts, batch_size).astype(np.float64)


def _topk_hit(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((top == targets[:, None]).any(1).mean())


def kl_nats(logits: np.ndarray, reference: np.ndarray) -> float:
    """Mean KL(reference || model) per example, in nats."""
    p_log = cls_eval.log_softmax(reference)
    q_log = cls_eval.log_softmax(logits)
    return float((np.exp(p_log) * (p_log - q_log)).sum(1).mean())


def score(
    task: str, outputs: np.ndarray, examples: Examples, reference: np.ndarray | None, spec: EvalSpec, extra: Any = None
) -> Evaluation:
    """Quality of ``outputs`` (logits or embeddings) for ``task``; ``reference`` is fp32's
    outputs (None when scoring fp32 itself). ``extra`` for text-embedding: (pair scores or
    None, probe embeddings or None, probe labels). The headline per example: accuracy
    (classification), top-1 agreement (agreement), the pairs' Spearman rho (text pairs)."""
    ref = outputs if reference is None else reference
    headline, statistic, n = None, None, 0
    if task == "classification":
        if examples.y is None:
            raise ValueError("classification needs labels: the eval data has no 'y' array or 'label' column")
        y = examples.y.astype(np.int64)
        if y.min() < 0 or y.max() >= outputs.shape[1]:
            raise ValueError(f"labels range over [{y.min()}, {y.max()}] but the model has {outputs.shape[1]} outputs")
        metrics = {
            "accuracy": cls_eval.accuracy(outputs, y),
            f"top{spec.top_k}_accuracy": _topk_hit(outputs, y, spec.top_k),
            "agreement_to_fp32": cls_eval.agreement(outputs, ref),
            "nll_bits": cls_eval.nll_nats(outputs, y) / np.log(2),
        }
        headline, statistic, n = "accuracy", mean_of(outputs.argmax(1) == y), len(y)
    elif task == "agreement":
        top1 = ref.argmax(1)
        metrics = {
            "top1_agreement": cls_eval.agreement(outputs, ref),
            f"top{spec.top_k}_agreement": _topk_hit(outputs, top1, spec.top_k),
            "kl_to_fp32": kl_nats(outputs, ref),
        }
        headline, statistic, n = "top1_agreement", mean_of(outputs.argmax(1) == top1), len(top1)
    else:
        human, probe_emb, probe_labels = extra
        metrics = {} if human is None else {"pairs_spearman": pairs_spearman(outputs, human)}
        if human is not None:
            headline, statistic, n = (
                "pairs_spearman",
                spearman_of(_pair_cosines(outputs, len(human)), human),
                len(human),
            )
        if probe_emb is not None:
            metrics["probe_accuracy"] = emb_eval.probe_accuracy(probe_emb, probe_labels, spec.folds)
        metrics["cosine_to_fp32"] = emb_eval.mean_cosine(outputs, ref)
    if not all(np.isfinite(v) for v in metrics.values()):
        raise ValueError(f"non-finite quality metrics: {metrics}")
    return Evaluation(metrics, outputs, headline, statistic, n)


def pairs_spearman(embeddings: np.ndarray, human: np.ndarray) -> float:
    """Spearman rho between pair cosines and human scores; ``embeddings`` stacks (first texts, second texts)."""
    from scipy.stats import spearmanr

    return float(spearmanr(_pair_cosines(embeddings, len(human)), human).statistic)


def _pair_cosines(embeddings: np.ndarray, n: int) -> np.ndarray:
    a, b = embeddings[:n], embeddings[n:]
    cos: np.ndarray = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return cos
