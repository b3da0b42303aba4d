"""Train, export and check a zoo model: the steps the full zoo and the tiny test zoo share.

Every model is fed ``pixels`` (float32, already normalised, a dynamic batch axis) and
returns ``logits``. The exported graph keeps its BatchNormalization nodes: folding them
into the convs is the pipeline's job, and a graph that arrives folded would not test it.
"""

from __future__ import annotations

import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from model_compression.datasets import fashion_mnist as fm

INPUT, OUTPUT, OPSET = "pixels", "logits", 17


def fashion_mnist(folder: Path, split: str, n: int | None, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` (all when None) images of ``split``, normalised and reshaped to
    ``(n, *shape)`` float32, and their int64 labels."""
    images, labels = fm.load_split(folder, split)
    images, labels = images[:n], labels[:n]
    return np.ascontiguousarray(fm.normalize(images).reshape(len(images), *shape)), labels


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, lr: float, seed: int) -> float:
    """Train ``model`` with AdamW and a one-cycle learning rate; return the seconds it took.

    Args:
        x, y: training inputs (float32) and labels (int64).
        epochs: passes over ``x``; 0 leaves the model as initialised.
        batch_size: examples per step; lr: the one-cycle peak learning rate.
        seed: the data order (a fresh permutation per epoch, from this seed alone).
    """
    start = time.perf_counter()
    steps = epochs * -(-len(x) // batch_size)
    if steps == 0:
        return 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    # one-cycle: a short warm-up then annealing reaches good accuracy in few epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    order = torch.Generator().manual_seed(seed)
    # channels-last runs the depthwise and pointwise convs 2-3x faster on CPU (oneDNN)
    layout = torch.channels_last if x.ndim == 4 else torch.contiguous_format
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.to(memory_format=layout).train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=order).split(batch_size):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx].contiguous(memory_format=layout)), yt[idx]).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the GRU's and the ViT's first steps
            opt.step()
            sched.step()
    model.to(memory_format=torch.contiguous_format).eval()
    return time.perf_counter() - start


def export(model: nn.Module, example: np.ndarray, path: Path) -> Path:
    """Export ``model`` in eval mode to ``path`` (opset 17, legacy exporter, dynamic batch).

    ``TrainingMode.PRESERVE`` exports the eval-mode model as it is: the default (EVAL) runs
    a peephole pass that folds each BatchNorm into the conv before it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # the legacy exporter's deprecation notice, and its advice against constant folding
        # in PRESERVE mode, which concerns models in training mode only
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.from_numpy(example),),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=True,
            dynamo=False,
        )
    return path


def onnx_logits(path: Path, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Run the ONNX file at ``path`` on ``x`` with onnxruntime (CPU), ``batch_size`` at a time."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    starts = range(0, len(x), batch_size)
    return np.concatenate([session.run([OUTPUT], {INPUT: x[i : i + batch_size]})[0] for i in starts])


@torch.no_grad()
def torch_logits(model: nn.Module, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The eval-mode model's logits on ``x``, ``batch_size`` at a time."""
    model.eval()
    starts = range(0, len(x), batch_size)
    return np.concatenate([model(torch.from_numpy(x[i : i + batch_size])).numpy() for i in starts])


def max_abs_diff(model: nn.Module, path: Path, x: np.ndarray) -> float:
    """Largest absolute difference between torch's and onnxruntime's logits on ``x``."""
    return float(np.abs(torch_logits(model, x) - onnx_logits(path, x)).max())


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy, in [0, 1]."""
    return float((logits.argmax(axis=1) == y).mean())


def write_eval(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """Save the eval file the catalogue's ``eval.data`` points at: ``x`` float32, ``y`` int64.

    The same arrays give the same bytes, so the entry's sha256 is repeatable: ``np.savez``
    stamps each member with the current time.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for key, value in (("x", x.astype(np.float32)), ("y", y.astype(np.int64))):
            member = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(member, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(value))
    return path
