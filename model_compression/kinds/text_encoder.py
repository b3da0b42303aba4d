"""Kind ``text-encoder``: a BERT-style sentence encoder such as all-MiniLM-L6-v2: build,
load, export and calibrate it. Its quality suite is ``evaluate/sentence.py``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_compression import onnx_export
from model_compression.datasets import text as text_data
from model_compression.models.text_encoder import SentenceEncoder, load_encoder, tokenize

OUTPUT = "sentence_embedding"
HF_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


@dataclass(frozen=True)
class TextEvalConfig:
    """Evaluation settings.

    Attributes:
        max_length: token limit per text at evaluation (default 128).
        heldout: last N background sentences held out for the cosine check (default 200).
        calibration: sentences for static calibration, taken before the held-out ones.
        folds: folds of the polarity probe (default 10).
        batch_size: texts per ONNX call.
        corpus: the training text, in order: ``lee_background`` (the sentences before the
            held-out tail) and/or ``wiki`` (gensim's Wikipedia excerpt); default both.
    """

    max_length: int = 128
    heldout: int = 200
    calibration: int = 64
    folds: int = 10
    batch_size: int = 32
    corpus: tuple[str, ...] = ("lee_background", "wiki")

    def __post_init__(self) -> None:
        for name in ("max_length", "heldout", "calibration", "folds", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TextEvalConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.corpus or set(self.corpus) - {"lee_background", "wiki"}:
            raise ValueError(f"TextEvalConfig.corpus must name lee_background and/or wiki, got {list(self.corpus)}")


def build_baseline(source: Path, out: Path) -> SentenceEncoder:
    """Copy the encoder's weights and tokenizer from ``source`` into ``out`` and export
    ``out/model.onnx``. Loading first checks the weights are safetensors and finite."""
    model, tok = load_encoder(source)
    out.mkdir(parents=True, exist_ok=True)
    for name in HF_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    export(model, tok, out / "model.onnx")
    return model


def load(folder: Path) -> tuple[SentenceEncoder, object]:
    return load_encoder(folder)


def export(model: torch.nn.Module, tokenizer: object, path: Path) -> Path:
    example = tokenize(tokenizer, ["an example sentence", "another, longer example sentence"], 16)
    dyn = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, OUTPUT: {0: "batch"}}
    return onnx_export.export(model, example, path, OUTPUT, dyn)


def tokenizer(folder: Path) -> object:
    """The Hugging Face tokenizer saved in ``folder`` (the baseline's), loaded offline."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def train_sentences(cfg: TextEvalConfig) -> list[str]:
    """The training text, for distillation, calibration and token counts: the Lee background
    sentences before the held-out tail (carved off first, never trained on), then gensim's
    Wikipedia excerpt (a broader vocabulary than the news background)."""
    parts = {
        "lee_background": lambda: text_data.split_heldout(text_data.background_sentences(), cfg.heldout)[0],
        "wiki": lambda: list(text_data.wiki_sentences()),
    }
    return [s for name in cfg.corpus for s in parts[name]()]


def token_counts(tokenizer_dir: Path, cfg: TextEvalConfig) -> np.ndarray:
    """Occurrences of each vocabulary id in the training sentences (special tokens included),
    int64 [vocabulary size]: the token distribution embedding-table coding weighs rows by."""
    tok: Any = tokenizer(tokenizer_dir)
    ids = tok(train_sentences(cfg), truncation=True, max_length=cfg.max_length)["input_ids"]
    return np.bincount(np.concatenate([np.asarray(i, np.int64) for i in ids]), minlength=len(tok))


def calibration_feeds(tokenizer_dir: Path, cfg: TextEvalConfig) -> list[dict[str, np.ndarray]]:
    """Calibration batches from training sentences (never the held-out ones)."""
    tok = tokenizer(tokenizer_dir)
    picked = train_sentences(cfg)[: cfg.calibration]
    return [{k: v.numpy() for k, v in tokenize(tok, [s], cfg.max_length).items()} for s in picked]
