"""Embedding distillation for sentence encoders: a shallower student learns the teacher's space.

The student starts from a subset of the teacher's layers (layer drop) and trains on
unlabelled text against the teacher's cached outputs (``teacher_cache``), never
recomputing them. The loss has three parts, weighted in the config:

- ``1 - cos`` between the student's and the teacher's unit sentence embeddings;
- the MSE between their in-batch similarity matrices (the geometry a search index sees);
- the MSE between their last hidden states, token by token (when cached).

AdamW with linear warm-up then linear decay, gradients clipped by norm. The word-embedding
table can stay frozen: it is half the weights and the teacher's is already good. Training
is deterministic from the seed, and a checkpoint every ``checkpoint_every`` steps lets a
killed run resume where it stopped, bit for bit (model, optimiser, schedule and both RNG
states are saved).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model_compression import progress as training
from model_compression.distill.teacher_cache import TeacherCache
from model_compression.models.text_encoder import SentenceEncoder, layer_drop_student, mean_pool

Progress = Callable[[int, int, dict[str, float]], None]  # (step, steps, {"loss", ..., "val_cosine"})


@dataclass(frozen=True)
class EmbeddingDistillConfig:
    """Settings for embedding distillation.

    Attributes:
        layers: teacher layer indices the student keeps (e.g. ``(0, 2, 4)`` of 6).
        steps: optimiser steps (the training budget), >= 1.
        batch_size: sentences per step, >= 2 (the similarity loss compares pairs).
        lr: peak AdamW learning rate, > 0.
        max_length: token limit per sentence (the teacher cache's; default 64).
        seed: seeds sampling and dropout (the stage sets it from params.yaml).
        warmup: fraction of ``steps`` of linear warm-up, then linear decay to 0 (default 0.06).
        weight_decay: AdamW weight decay (default 0.01).
        clip_norm: gradient norm clip (default 1.0).
        cosine_weight, similarity_weight, hidden_weight: loss weights (default 1, 10, 1).
        freeze_word_embeddings: keep the teacher's word-embedding table (default True).
        checkpoint_every: steps between checkpoints, and validations (default 200).
        validation: sentences held back from training at the cache's end, for the
            validation cosine (default 256).
        bucket: each batch is a random window of sentences sorted by length (ties in a
            seeded random order), so little compute goes to padding: about half the step
            time on sentences of 5-64 tokens (default True; False draws rows uniformly).
    """

    layers: tuple[int, ...] = (0, 2, 4)
    steps: int = 200
    batch_size: int = 32
    lr: float = 5e-5
    max_length: int = 64
    seed: int = 0
    warmup: float = 0.06
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    cosine_weight: float = 1.0
    similarity_weight: float = 10.0
    hidden_weight: float = 1.0
    freeze_word_embeddings: bool = True
    checkpoint_every: int = 200
    validation: int = 256
    bucket: bool = True

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("EmbeddingDistillConfig.layers must keep at least one layer")
        for name in ("steps", "max_length", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"EmbeddingDistillConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"EmbeddingDistillConfig.batch_size must be >= 2, got {self.batch_size}")
        if self.lr <= 0 or not 0 <= self.warmup < 1 or self.clip_norm <= 0:
            raise ValueError("EmbeddingDistillConfig needs lr > 0, 0 <= warmup < 1 and clip_norm > 0")
        if min(self.cosine_weight, self.similarity_weight, self.hidden_weight, self.weight_decay) < 0:
            raise ValueError("EmbeddingDistillConfig loss weights and weight_decay must be >= 0")
        if self.validation < 0:
            raise ValueError(f"EmbeddingDistillConfig.validation must be >= 0, got {self.validation}")


def lr_factor(step: int, cfg: EmbeddingDistillConfig) -> float:
    """The learning-rate multiplier at ``step``: linear warm-up, then linear decay to 0."""
    warm = max(1, round(cfg.warmup * cfg.steps))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (cfg.steps - step) / max(1, cfg.steps - warm))


def losses(student: SentenceEncoder, batch: dict[str, torch.Tensor], cfg: EmbeddingDistillConfig) -> dict[str, Any]:
    """The weighted loss (``"loss"``, a tensor) and its parts (floats) on one cached batch."""
    inner: Any = student.encoder
    hidden = inner(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    emb = mean_pool(hidden, batch["attention_mask"])
    target = batch["embedding"]
    parts = {
        "cosine": (1 - (emb * target).sum(-1)).mean(),
        "similarity": nn.functional.mse_loss(emb @ emb.T, target @ target.T),
    }
    if "hidden" in batch and cfg.hidden_weight > 0:
        parts["hidden"] = (((hidden - batch["hidden"]) ** 2) * mask).sum() / (mask.sum() * hidden.shape[-1])
    weights = {"cosine": cfg.cosine_weight, "similarity": cfg.similarity_weight, "hidden": cfg.hidden_weight}
    total = sum(weights[k] * v for k, v in parts.items())
    return {"loss": total, **{k: float(v.detach()) for k, v in parts.items()}}


def fingerprint(teacher: nn.Module, cache: TeacherCache, cfg: EmbeddingDistillConfig) -> str:
    """What a checkpoint must match to be resumed: the config, the corpus and the teacher."""
    h = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    h.update(cache.meta["corpus_sha256"].encode())
    for name, t in teacher.state_dict().items():
        h.update(name.encode() + t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint whole


def _validate(student: SentenceEncoder, cache: TeacherCache, rows: np.ndarray) -> float:
    student.eval()
    with torch.no_grad():
        cos = [float((student(b["input_ids"], b["attention_mask"]) * b["embedding"]).sum(-1).mean()) * len(r)
               for r in np.array_split(rows, max(1, len(rows) // 64)) if len(r) for b in [cache.batch(r)]]  # fmt: skip
    student.train()
    return sum(cos) / max(1, len(rows))


def distill(
    teacher: SentenceEncoder,
    cache: TeacherCache,
    cfg: EmbeddingDistillConfig,
    checkpoint: Path | None = None,
    progress: Progress | None = None,
) -> tuple[SentenceEncoder, dict[str, Any]]:
    """Build a layer-drop student of ``teacher`` and distil it against ``cache``. With
    ``checkpoint`` (a file path), resume from it when it matches (``fingerprint``) and
    save to it as training goes. Returns (student in eval mode, {"losses", "val_cosine",
    "resumed_at"})."""
    train_rows = len(cache) - cfg.validation
    if train_rows < cfg.batch_size:
        raise ValueError(f"the cache has {len(cache)} sentences: too few for batch_size={cfg.batch_size} "
                         f"after holding {cfg.validation} back for validation")  # fmt: skip
    student = layer_drop_student(teacher, list(cfg.layers))
    inner: Any = student.encoder
    inner.embeddings.word_embeddings.weight.requires_grad_(not cfg.freeze_word_embeddings)
    params = [p for p in student.parameters() if p.requires_grad]
    # fused: its sqrt is exactly rounded, the same bits on every CPU (MKL's vectorised one is not)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # dropout draws from the global generator
    val_rows = np.arange(train_rows, len(cache))
    lengths = np.diff(cache.offsets)[:train_rows]
    by_length = np.lexsort((np.random.default_rng(cfg.seed).permutation(train_rows), lengths))
    history: dict[str, Any] = {"losses": [], "val_cosine": [], "resumed_at": 0}
    key = fingerprint(teacher, cache, cfg) if checkpoint else ""
    if checkpoint and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=True)
        if saved["fingerprint"] == key:
            student.load_state_dict(saved["student"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["schedule"])
            gen.set_state(saved["sampler_rng"])
            torch.set_rng_state(saved["torch_rng"])
            history = {**saved["history"], "resumed_at": int(saved["step"])}
    student.train()
    for step in range(history["resumed_at"], cfg.steps):
        if cfg.bucket:
            start = int(torch.randint(train_rows - cfg.batch_size + 1, (1,), generator=gen))
            rows = by_length[start : start + cfg.batch_size]
        else:
            rows = torch.randint(train_rows, (cfg.batch_size,), generator=gen).numpy()
        out = losses(student, cache.batch(rows), cfg)
        opt.zero_grad()
        out["loss"].backward()
        nn.utils.clip_grad_norm_(params, cfg.clip_norm)
        opt.step()
        sched.step()
        history["losses"].append(float(out["loss"].detach()))
        done = step + 1
        report = {k: v for k, v in out.items() if k != "loss"} | {"loss": history["losses"][-1]}
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            if len(val_rows):
                history["val_cosine"].append([done, _validate(student, cache, val_rows)])
                report["val_cosine"] = history["val_cosine"][-1][1]
            if checkpoint:
                _save(checkpoint, {"fingerprint": key, "step": done, "student": student.state_dict(),
                                   "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                                   "sampler_rng": gen.get_state(), "torch_rng": torch.get_rng_state(),
                                   "history": history})  # fmt: skip
        training.report(done, cfg.steps, history["losses"][-1])
        if progress:
            progress(done, cfg.steps, report)
    return student.eval(), history
