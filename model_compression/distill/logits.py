"""Logit knowledge distillation of the Fashion-MNIST CNN into a narrower student."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from model_compression.models.fashion_cnn import CNNConfig, FashionCNN, TrainConfig, predict_logits, train


@dataclass(frozen=True)
class LogitDistillConfig:
    """Student shape and KD loss settings.

    Attributes:
        student: the student's architecture (fewer channels than the teacher).
        train: epochs, batch size, learning rate, subset and seed.
        temperature: softmax temperature T > 0 for the soft targets (default 4).
        alpha: weight of the KD term in [0, 1] (default 0.7).
    """

    student: CNNConfig = field(default_factory=lambda: CNNConfig(channels=(16, 32), hidden=64))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1))
    temperature: float = 4.0
    alpha: float = 0.7

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"LogitDistillConfig.temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"LogitDistillConfig.alpha must be in [0, 1], got {self.alpha}")


def distill(
    teacher: nn.Module, x: np.ndarray, y: np.ndarray, cfg: LogitDistillConfig
) -> tuple[FashionCNN, list[float]]:
    """Train a fresh student on labels plus the teacher's soft targets; returns (student, epoch losses)."""
    import torch

    torch.manual_seed(cfg.train.seed)
    student = FashionCNN(cfg.student)
    soft = predict_logits(teacher, x)
    losses = train(student, x, y, cfg.train, soft_targets=soft, temperature=cfg.temperature, alpha=cfg.alpha)
    return student, losses
