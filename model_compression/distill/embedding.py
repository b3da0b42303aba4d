"""Embedding distillation for sentence encoders: the student learns the teacher's vectors.

The student starts from a subset of the teacher's layers (layer drop) and is trained on
unlabelled text to minimise ``1 - cos(student(x), teacher(x))``. No labels are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from model_compression.models.text_encoder import SentenceEncoder, layer_drop_student, tokenize


@dataclass(frozen=True)
class EmbeddingDistillConfig:
    """Settings for embedding distillation.

    Attributes:
        layers: teacher layer indices the student keeps (e.g. ``(0, 2, 4)`` of 6).
        steps: optimiser steps (the training budget), >= 1.
        batch_size: sentences per step, >= 1.
        lr: AdamW learning rate, > 0.
        max_length: token limit per sentence during training.
        seed: seeds sentence sampling.
    """

    layers: tuple[int, ...] = (0, 2, 4)
    steps: int = 200
    batch_size: int = 32
    lr: float = 5e-5
    max_length: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("EmbeddingDistillConfig.layers must keep at least one layer")
        for name in ("steps", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"EmbeddingDistillConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"EmbeddingDistillConfig.lr must be > 0, got {self.lr}")


def distill(
    teacher: SentenceEncoder, tokenizer: Any, sentences: list[str], cfg: EmbeddingDistillConfig
) -> tuple[SentenceEncoder, list[float]]:
    """Build a layer-drop student of ``teacher`` and distil it on ``sentences``.

    Returns:
        (student in eval mode, loss per step).
    """
    if len(sentences) < cfg.batch_size:
        raise ValueError(f"need at least batch_size={cfg.batch_size} sentences, got {len(sentences)}")
    student = layer_drop_student(teacher, list(cfg.layers))
    teacher.eval()
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for _ in range(cfg.steps):
        idx = torch.randint(len(sentences), (cfg.batch_size,), generator=g).tolist()
        batch = tokenize(tokenizer, [sentences[i] for i in idx], cfg.max_length)
        with torch.no_grad():
            target = teacher(**batch)
        loss = (1 - (student(**batch) * target).sum(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return student.eval(), losses
