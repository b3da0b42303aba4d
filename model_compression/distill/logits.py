"""Logit knowledge distillation: the Fashion-MNIST CNN into a narrower student, and any
custom classifier into a student its own factory builds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class StudentDistillConfig:
    """KD of a custom model into a student built by the same factory with other arguments.

    Attributes:
        student_args: keyword arguments overriding the teacher's ``factory_args`` (e.g. a
            smaller hidden size); the student must take the same inputs.
        train: epochs, batch size, learning rate, subset and seed (on the calibration split).
        temperature: softmax temperature T > 0 (default 4).
        alpha: weight of the KD term in [0, 1] (default 0.7); without labels the teacher's
            top-1 class stands in for the label.
    """

    student_args: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5))
    temperature: float = 4.0
    alpha: float = 0.7

    def __post_init__(self) -> None:
        if not self.student_args:
            raise ValueError("StudentDistillConfig.student_args must name at least one factory argument to shrink")
        if self.temperature <= 0:
            raise ValueError(f"StudentDistillConfig.temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"StudentDistillConfig.alpha must be in [0, 1], got {self.alpha}")


def distill_into(
    student: nn.Module, teacher: nn.Module, x: np.ndarray, y: np.ndarray | None, cfg: StudentDistillConfig
) -> list[float]:
    """Train ``student`` (in place) on ``x`` against the teacher's soft targets; returns epoch losses."""
    import torch

    torch.manual_seed(cfg.train.seed)
    with torch.no_grad():
        soft = predict_logits(teacher, x).reshape(len(x), -1)
    labels = soft.argmax(1).numpy() if y is None else y.astype(np.int64)
    return train(student, x, labels, cfg.train, soft_targets=soft, temperature=cfg.temperature, alpha=cfg.alpha)
