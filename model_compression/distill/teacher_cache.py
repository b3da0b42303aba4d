"""The teacher's outputs on a corpus, computed once and read from disk by every student.

Distillation runs the student for thousands of steps, but the teacher's side of the loss
never changes: its sentence embedding per sentence and, for a token-level loss, its last
hidden state per token. Both are computed here once and written as NumPy arrays that the
student memory-maps, so training reads them without holding them in memory:

    ids.npy       int32 [tokens]       every sentence's token ids, back to back
    offsets.npy   int64 [sentences+1]  where each sentence's tokens start (and the end)
    embedding.npy float32 [sentences, width]  the teacher's unit-norm sentence embeddings
    hidden.npy    float16 [tokens, width]     its last hidden states (``hidden=True`` only)
    meta.json     sizes, the corpus's sha256 and the config

Sentences are stored ragged (no padding), so the hidden states cost only real tokens:
about 22k sentences of 30 tokens at width 384 take 0.5 GB as float16.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_compression.models.text_encoder import mean_pool, tokenize


@dataclass(frozen=True)
class TeacherCacheConfig:
    """Attributes:
    max_length: tokens per sentence, truncated (default 64).
    batch_size: sentences per teacher forward pass (default 64).
    hidden: also keep the last hidden state of every token (default True).
    """

    max_length: int = 64
    batch_size: int = 64
    hidden: bool = True

    def __post_init__(self) -> None:
        if self.max_length < 2 or self.batch_size < 1:
            raise ValueError(
                f"TeacherCacheConfig needs max_length >= 2 and batch_size >= 1, "
                f"got {self.max_length} and {self.batch_size}"
            )


def corpus_sha256(sentences: list[str]) -> str:
    h = hashlib.sha256()
    for s in sentences:
        h.update(s.encode() + b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class TeacherCache:
    """A cache on disk, memory-mapped: see the module docstring for the arrays."""

    ids: np.ndarray
    offsets: np.ndarray
    embedding: np.ndarray
    hidden: np.ndarray | None
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """Padded ``input_ids``, ``attention_mask``, the teacher's ``embedding`` and, when
        cached, ``hidden`` [batch, tokens, width] of sentences ``rows``."""
        spans = [(int(self.offsets[r]), int(self.offsets[r + 1])) for r in rows]
        width = max(b - a for a, b in spans)
        ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        out: dict[str, torch.Tensor] = {}
        hidden = None if self.hidden is None else np.zeros((len(rows), width, self.hidden.shape[1]), np.float32)
        for i, (a, b) in enumerate(spans):
            ids[i, : b - a], mask[i, : b - a] = self.ids[a:b], 1
            if hidden is not None and self.hidden is not None:
                hidden[i, : b - a] = self.hidden[a:b]
        out["input_ids"], out["attention_mask"] = torch.from_numpy(ids), torch.from_numpy(mask)
        out["embedding"] = torch.from_numpy(np.asarray(self.embedding[rows], np.float32))
        if hidden is not None:
            out["hidden"] = torch.from_numpy(hidden)
        return out


def build(teacher: torch.nn.Module, tokenizer: Any, sentences: list[str], out: Path, cfg: TeacherCacheConfig) -> dict:
    """Run ``teacher`` (a ``SentenceEncoder``) over ``sentences`` and write the cache to
    ``out``; returns its meta. Memory is bounded by one batch: arrays are written in place."""
    if not sentences:
        raise ValueError("the teacher cache needs at least one sentence")
    out.mkdir(parents=True, exist_ok=True)
    enc = tokenizer(sentences, truncation=True, max_length=cfg.max_length)["input_ids"]
    lengths = np.array([len(x) for x in enc], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    np.save(out / "ids.npy", np.concatenate([np.asarray(x, np.int32) for x in enc]))
    np.save(out / "offsets.npy", offsets)
    inner: Any = teacher.encoder
    width = int(inner.config.hidden_size)
    emb = np.lib.format.open_memmap(out / "embedding.npy", "w+", np.float32, (len(sentences), width))
    hid = (
        np.lib.format.open_memmap(out / "hidden.npy", "w+", np.float16, (int(offsets[-1]), width))
        if cfg.hidden
        else None
    )
    teacher.eval()
    order = np.argsort(lengths, kind="stable")  # batches of like lengths: little padding to compute
    with torch.no_grad():
        for start in range(0, len(sentences), cfg.batch_size):
            rows = order[start : start + cfg.batch_size]
            feeds = tokenize(tokenizer, [sentences[r] for r in rows], cfg.max_length)
            states = inner(**feeds).last_hidden_state  # one pass: the embedding is pooled from it
            emb[rows] = mean_pool(states, feeds["attention_mask"]).numpy()
            if hid is not None:
                for i, r in enumerate(rows):
                    hid[offsets[r] : offsets[r + 1]] = states[i, : lengths[r]].numpy()
    emb.flush()
    if hid is not None:
        hid.flush()
    meta = {"sentences": len(sentences), "tokens": int(offsets[-1]), "width": width,
            "corpus_sha256": corpus_sha256(sentences), "config": asdict(cfg)}  # fmt: skip
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def load(folder: Path) -> TeacherCache:
    """The cache in ``folder``, memory-mapped read-only."""
    if not (folder / "meta.json").is_file():
        raise FileNotFoundError(f"no teacher cache in {folder} (meta.json missing)")
    meta = json.loads((folder / "meta.json").read_text())
    hidden = np.load(folder / "hidden.npy", mmap_mode="r") if meta["config"]["hidden"] else None
    return TeacherCache(
        ids=np.load(folder / "ids.npy", mmap_mode="r"),
        offsets=np.load(folder / "offsets.npy"),
        embedding=np.load(folder / "embedding.npy", mmap_mode="r"),
        hidden=hidden,
        meta=meta,
    )
