"""The sentence encoder's quality suite, measured on an ONNX artifact.

Pearson r on the Lee similarity pairs, 10-fold logistic-regression accuracy on Pang & Lee
polarity, Spearman rho on WordSim-353, and the mean cosine to the fp32 embeddings of
held-out background sentences (never used for distillation or calibration).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_compression.datasets import text as text_data
from model_compression.evaluate import embedding as emb_eval
from model_compression.evaluate.result import Evaluation, Statistic, mean_of, pearson_of, spearman_of
from model_compression.kinds.text_encoder import TextEvalConfig, tokenizer
from model_compression.models.text_encoder import tokenize
from model_compression.runtime.session import check_inputs, make_session


def onnx_embedder(path: Path, tokenizer: object, max_length: int, threads: int) -> emb_eval.Embed:
    session = make_session(path, threads)

    def embed(texts: list[str]) -> np.ndarray:
        feeds = {k: v.numpy() for k, v in tokenize(tokenizer, texts, max_length).items()}
        check_inputs(session, feeds)
        return session.run(None, feeds)[0]

    return embed


def evaluate(
    path: Path, tokenizer_dir: Path, cfg: TextEvalConfig, threads: int, reference: np.ndarray | None
) -> Evaluation:
    """Quality of the ONNX encoder at ``path``; its outputs are the held-out embeddings
    and its headline, per pair, is the Lee Pearson r."""
    embed = onnx_embedder(path, tokenizer(tokenizer_dir), cfg.max_length, threads)
    lee = text_data.load_lee()
    pol = text_data.load_polarity()
    _, held = text_data.split_heldout(text_data.background_sentences(), cfg.heldout)
    held_emb = emb_eval.embed_all(embed, held, cfg.batch_size)
    pol_emb = emb_eval.embed_all(embed, pol.texts, cfg.batch_size)
    lee_emb = emb_eval.embed_all(embed, lee.docs, cfg.batch_size)
    hits = emb_eval.probe_hits(pol_emb, pol.labels, cfg.folds)
    wordsim, wordsim_stat = _wordsim(embed, cfg.batch_size)
    metrics = {
        "lee_pearson": emb_eval.lee_pearson(lee_emb, lee.human),
        "polarity_accuracy": float(hits.mean()),
        "wordsim_spearman": wordsim,
        "cosine_to_fp32": 1.0 if reference is None else emb_eval.mean_cosine(held_emb, reference),
    }
    if not all(np.isfinite(v) for v in metrics.values()):
        raise ValueError(f"non-finite quality metrics for {path}: {metrics}")
    unit = lee_emb / np.linalg.norm(lee_emb, axis=1, keepdims=True)
    pairs = np.triu_indices(len(unit), 1)
    statistic = pearson_of((unit @ unit.T)[pairs], lee.human[pairs])
    per_metric = {
        "lee_pearson": (statistic, len(pairs[0])),
        "polarity_accuracy": (mean_of(hits), len(hits)),  # the probes stay fit on all folds
        "wordsim_spearman": wordsim_stat,
    }
    return Evaluation(metrics, held_emb, "lee_pearson", statistic, len(pairs[0]), per_metric)


def _wordsim(embed: emb_eval.Embed, batch_size: int) -> tuple[float, tuple[Statistic, int]]:
    """Spearman of word-pair cosines against WordSim-353's human scores (each word embedded
    alone), and its per-pair form."""
    ws = text_data.load_wordsim()
    words = sorted({w for pair in ws.pairs for w in pair})
    vectors = dict(zip(words, emb_eval.embed_all(embed, words, batch_size), strict=True))
    a = np.stack([vectors[x] for x, _ in ws.pairs])
    b = np.stack([vectors[y] for _, y in ws.pairs])
    cos, human = emb_eval.pair_cosines(a, b), np.asarray(ws.human, dtype=np.float64)
    return emb_eval.pair_spearman(a, b, ws.human), (spearman_of(cos, human), len(cos))
