"""Fine-tuning a compressed model against its fp32 teacher (knowledge distillation), with
its structure held: pruned weights stay zero, and a k-means-shared tensor keeps its
assignments while its shared values (the centroids) learn.

The centroids are fine-tuned by projection (Han et al., 2016, fine-tune the codebook with
the assignments fixed): after every optimiser step each group of weights that shared a value
is set to the group's mean, the Euclidean projection back onto tied weights. With plain SGD
that is exactly the paper's update (the group's summed gradient, scaled by 1/size); with
Adam it is the projected Adam step. At the end each centroid is rounded to float16, the
codebook precision the transfer package stores exactly.

- Classifiers (the CNN): logit KD with temperature, ``(1 - alpha) CE + alpha T^2 KL``.
- Sentence encoders (MiniLM): hidden-state and embedding KD. The loss is
  ``1 - cos(student embedding, teacher embedding)`` plus ``hidden_weight`` x the mean
  squared error between the student's and the teacher's hidden states, at every layer
  the two share (after head/neuron pruning the student keeps the teacher's depth and
  width, so layer i learns from layer i; a layer-drop student maps evenly).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from model_compression import progress as training
from model_compression.models.fashion_cnn import TrainConfig, predict_logits, train
from model_compression.models.text_encoder import mean_pool, tokenize


@dataclass(frozen=True)
class FinetuneConfig:
    """Attributes:
    train: classifiers: epochs, batch size, learning rate, subset (default 1 epoch, lr 5e-4).
    steps: encoders: optimiser steps, >= 1 (default 200).
    batch_size: encoders: sentences per step (default 32).
    lr: encoders: AdamW learning rate (default 5e-5).
    max_length: encoders: token limit per sentence (default 64).
    temperature: classifiers: KD softmax temperature > 0 (default 4).
    alpha: classifiers: weight of the KD term in [0, 1] (default 0.7).
    hidden_weight: encoders: weight of the hidden-state MSE term, >= 0 (default 1).
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=5e-4))
    steps: int = 200
    batch_size: int = 32
    lr: float = 5e-5
    max_length: int = 64
    temperature: float = 4.0
    alpha: float = 0.7
    hidden_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"FinetuneConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.temperature <= 0:
            raise ValueError(f"FinetuneConfig.lr and temperature must be > 0, got {self.lr}, {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"FinetuneConfig.alpha must be in [0, 1], got {self.alpha}")
        if self.hidden_weight < 0:
            raise ValueError(f"FinetuneConfig.hidden_weight must be >= 0, got {self.hidden_weight}")


def zero_mask(model: nn.Module) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """(parameter, boolean mask of its zeros) for every weight matrix that holds zeros."""
    return [(p, p.detach() == 0) for p in model.parameters() if p.dim() >= 2 and bool((p == 0).any())]


MAX_SHARED = 256  # k-means at up to 8 bits: a weight matrix with this few distinct non-zero values is shared


@dataclass
class Tied:
    """One shared weight matrix: the group of each element (its value's index among the
    tensor's distinct values), the group sizes, and the group of zero (-1 if none)."""

    param: nn.Parameter
    group: torch.Tensor
    sizes: torch.Tensor
    zero: int


class Structure:
    """What fine-tuning must keep of a compressed model: zeros and k-means assignments.

    ``hold()`` after every optimiser step re-applies both; ``finish()`` once at the end
    rounds the centroids to float16. Tensors with at most ``MAX_SHARED`` distinct non-zero
    values, and at least 4 elements per value, count as shared."""

    def __init__(self, model: nn.Module) -> None:
        self.zeros = zero_mask(model)
        self.tied: list[Tied] = []
        for p in model.parameters():
            if p.dim() < 2:
                continue
            values, group = p.detach().flatten().unique(return_inverse=True)
            nonzero = int((values != 0).sum())
            if nonzero <= MAX_SHARED and p.numel() >= 4 * len(values):
                zero = int((values == 0).nonzero()[0]) if nonzero < len(values) else -1
                self.tied.append(Tied(p, group, torch.bincount(group, minlength=len(values)), zero))

    @torch.no_grad()
    def hold(self) -> None:
        for t in self.tied:
            flat = t.param.view(-1)
            means = torch.zeros(len(t.sizes), dtype=flat.dtype).index_add_(0, t.group, flat) / t.sizes
            if t.zero >= 0:
                means[t.zero] = 0.0
            flat.copy_(means[t.group])
        for p, m in self.zeros:
            p.masked_fill_(m, 0.0)

    @torch.no_grad()
    def finish(self) -> None:
        for t in self.tied:
            t.param.copy_(t.param.half().float())

    def summary(self) -> dict[str, int]:
        return {"zero_masked": len(self.zeros), "centroids_tuned": len(self.tied)}


def finetune_classifier(
    student: nn.Module, teacher: nn.Module, x: np.ndarray, y: np.ndarray, cfg: FinetuneConfig, seed: int = 0
) -> list[float]:
    """Logit-KD fine-tuning of ``student`` in place, its structure held; returns epoch losses."""
    torch.manual_seed(seed)
    soft = predict_logits(teacher, x)
    train_cfg = dataclasses.replace(cfg.train, seed=seed)
    held = Structure(student)
    losses = train(student, x, y, train_cfg, soft, cfg.temperature, cfg.alpha, after_step=held.hold)
    held.finish()
    return losses


def _states(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """(L2-normalised mean-pooled embedding, hidden states) of a SentenceEncoder."""
    out = model.encoder(**batch, output_hidden_states=True)  # type: ignore[operator]
    return mean_pool(out.last_hidden_state, batch["attention_mask"]), out.hidden_states


def finetune_encoder(
    student: nn.Module, teacher: nn.Module, tokenizer: Any, sentences: list[str], cfg: FinetuneConfig, seed: int = 0
) -> list[float]:
    """Hidden-state + embedding KD of a sentence encoder in place; returns per-step losses."""
    if len(sentences) < cfg.batch_size:
        raise ValueError(f"need at least batch_size={cfg.batch_size} sentences, got {len(sentences)}")
    held = Structure(student)
    teacher.eval()
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, fused=True)  # fused: an exactly rounded sqrt
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(cfg.steps):
        idx = torch.randint(len(sentences), (cfg.batch_size,), generator=g).tolist()
        batch = tokenize(tokenizer, [sentences[i] for i in idx], cfg.max_length)
        with torch.no_grad():
            t_emb, t_hidden = _states(teacher, batch)
        s_emb, s_hidden = _states(student, batch)
        # student layer j learns from the teacher layer at the same relative depth
        pairs = [(s_hidden[j], t_hidden[round(j * (len(t_hidden) - 1) / max(len(s_hidden) - 1, 1))])
                 for j in range(1, len(s_hidden))]  # fmt: skip
        mask = batch["attention_mask"].unsqueeze(-1).to(s_emb.dtype)
        hidden = sum(((s - t).pow(2) * mask).sum() / (mask.sum() * s.shape[-1]) for s, t in pairs)
        loss = (1 - (s_emb * t_emb).sum(-1)).mean() + cfg.hidden_weight * hidden / max(len(pairs), 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        held.hold()
        losses.append(loss.item())
        training.report(len(losses), cfg.steps, losses[-1])
    held.finish()
    student.eval()
    return losses


def recipe_step(net: nn.Module, cfg: FinetuneConfig, ctx: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Recipe step ``finetune``: KD toward the fp32 teacher on the kind's training data."""
    losses = ctx.finetune(net, ctx.teacher, cfg)
    return net, {"loss_first": losses[0], "loss_last": losses[-1]}
