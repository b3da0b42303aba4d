"""The baseline Fashion-MNIST CNN and its deterministic training loop.

Default architecture (``CNNConfig()``): conv3x3(1->32) - ReLU - maxpool -
conv3x3(32->64) - ReLU - maxpool - linear(3136->128) - ReLU - linear(128->10),
421,642 parameters: a standard small CNN, documented in the catalogue as the honest
baseline that compression ratios are measured against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from model_compression import progress as training


@dataclass(frozen=True)
class CNNConfig:
    """Channels of the two conv blocks and width of the hidden linear layer."""

    channels: tuple[int, int] = (32, 64)
    hidden: int = 128

    def __post_init__(self) -> None:
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ValueError(f"CNNConfig.channels must be two positive ints, got {self.channels}")
        if self.hidden < 1:
            raise ValueError(f"CNNConfig.hidden must be positive, got {self.hidden}")


class FashionCNN(nn.Module):
    def __init__(self, cfg: CNNConfig = CNNConfig()) -> None:
        super().__init__()
        c1, c2 = cfg.channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# learning-rate factor at step ``done`` of ``steps`` (0-based), by schedule name
SCHEDULES: dict[str, Callable[[int, int], float]] = {
    "constant": lambda done, steps: 1.0,
    "cosine": lambda done, steps: 0.5 * (1.0 + math.cos(math.pi * done / steps)),
}


@dataclass(frozen=True)
class TrainConfig:
    """Supervised training: epochs, batch size, Adam learning rate, and optional subset.

    Attributes:
        epochs: passes over the (subset of the) training set, >= 1.
        batch_size: images per step, >= 1.
        lr: Adam learning rate, > 0.
        subset: use only the first ``subset`` training images (0 = all); tests use this.
        seed: seeds the shuffling and initialisation.
        schedule: the learning rate over the run's steps: ``constant`` (default) or ``cosine``,
            from ``lr`` down to 0 at the last step (Loshchilov & Hutter, 2017). A fine-tune of a
            pruned or clustered model ends nearer a minimum of the constrained loss with it.
    """

    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    subset: int = 0
    seed: int = 0
    schedule: str = "constant"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"TrainConfig.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"TrainConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.subset < 0:
            raise ValueError(f"TrainConfig.subset must be >= 0, got {self.subset}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}")


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches of ``range(n)``, drawn from ``generator``."""
    return list(torch.randperm(n, generator=generator).split(batch_size))


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    soft_targets: torch.Tensor | None = None,
    temperature: float = 1.0,
    alpha: float = 0.0,
    after_step: Callable[[], None] | None = None,
) -> list[float]:
    """Train ``model`` in place on float images ``x`` (N,1,28,28) and labels ``y``.

    With ``soft_targets`` (teacher logits, (N, 10)) the loss is
    ``(1 - alpha) * CE(y) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))`` (Hinton et al.).

    ``after_step`` runs after every optimiser step (fine-tuning a pruned model re-applies
    its zero mask there, so pruned weights stay pruned).

    Returns:
        The mean loss of each epoch.
    """
    if cfg.subset:
        x, y = x[: cfg.subset], y[: cfg.subset]
        soft_targets = None if soft_targets is None else soft_targets[: cfg.subset]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # fused: an exactly rounded sqrt
    model.train()
    history = []
    steps, done = cfg.epochs * -(-len(xt) // cfg.batch_size), 0
    for _ in range(cfg.epochs):
        total, seen = 0.0, 0
        for idx in batches(len(xt), cfg.batch_size, g):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * SCHEDULES[cfg.schedule](done, steps)
            logits = model(xt[idx])
            loss = nn.functional.cross_entropy(logits, yt[idx])
            if soft_targets is not None and alpha > 0:
                t = temperature
                kd = nn.functional.kl_div(
                    nn.functional.log_softmax(logits / t, -1),
                    nn.functional.log_softmax(soft_targets[idx] / t, -1),
                    log_target=True,
                    reduction="batchmean",
                )
                loss = (1 - alpha) * loss + alpha * t * t * kd
            opt.zero_grad()
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
            value, done = loss.item(), done + 1
            total += value * len(idx)
            seen += len(idx)
            training.report(done, steps, value)
        history.append(total / seen)
    model.eval()
    return history


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    return torch.cat([model(torch.from_numpy(x[i : i + batch_size])) for i in range(0, len(x), batch_size)])
