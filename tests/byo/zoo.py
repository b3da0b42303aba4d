"""The zoo's three architectures at a few thousand parameters each, as test fixtures.

The same factories and export as ``bench.zoo.build``, trained for one short epoch on
the first images of the real Fashion-MNIST. The tiny MobileNet has one dead channel:
a depthwise conv output channel whose kernel is all zeros and whose BatchNorm gives it
zero scale and zero shift, so a BatchNorm fold leaves it an all-zero kernel and bias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from bench.zoo import export as zx
from bench.zoo.models import FACTORIES, INPUT_SHAPES

FMNIST = Path("/usr/share/datasets/fashion-mnist")
TINY: dict[str, dict[str, Any]] = {
    "zoo-mobilenet": {"stem": 8, "blocks": ((16, 1), (32, 2))},  # 1,418 parameters
    "zoo-vit": {"dim": 16, "depth": 1, "heads": 2},  # 3,482
    "zoo-gru": {"hidden": 16, "layers": 1},  # 2,378
}
DEAD_BLOCK, DEAD_CHANNEL = 1, 5  # blocks.1.dw: the stride-2 depthwise conv, 16 channels


@torch.no_grad()
def kill_channel(model: torch.nn.Module, block: int, channel: int) -> str:
    """Zero ``channel`` of ``blocks[block]``'s depthwise conv and BatchNorm; return the
    conv weight's parameter name (the ONNX initializer's name in the unfolded export)."""
    blk = model.blocks[block]
    blk.dw.weight[channel] = 0.0
    # gamma = beta = 0 with mean 0, var 1: the folded scale and shift are both zero
    blk.dw_bn.weight[channel], blk.dw_bn.bias[channel] = 0.0, 0.0
    blk.dw_bn.running_mean[channel], blk.dw_bn.running_var[channel] = 0.0, 1.0
    return f"blocks.{block}.dw.weight"


def conv_reading(path: Path, initializer: str) -> str:
    """The name of the Conv node in the ONNX file at ``path`` whose weight is ``initializer``.

    Raises:
        ValueError: when no Conv node reads it (e.g. the export folded it away).
    """
    for node in onnx.load(str(path)).graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] == initializer:
            return node.name
    raise ValueError(f"no Conv node in {path.name} takes {initializer!r} as its weight")


def build_tiny_zoo(
    out: Path, data: Path = FMNIST, seed: int = 0, train_images: int = 1024, eval_images: int = 200
) -> dict[str, dict[str, Any]]:
    """Train and export the tiny zoo into ``out/<name>/{model.onnx,eval.npz}``.

    Args:
        out: destination folder (created).
        data: the Fashion-MNIST idx folder.
        seed: weights and data order; the same seed gives the same weights.
        train_images: first training images, one epoch in batches of 32 (default 1024).
        eval_images: first test images written to each ``eval.npz`` (default 200).

    Returns:
        ``{name: {"onnx": Path, "eval": Path, "module": nn.Module (eval mode), "input_shape":
        tuple}}``; ``zoo-mobilenet`` also has ``"dead_channel": {"conv": ONNX Conv node name,
        "weight": its weight initializer, "channel": output channel index}``.
    """
    x, y = zx.fashion_mnist(data, "train", train_images, (1, 28, 28))
    x_eval, y_eval = zx.fashion_mnist(data, "test", eval_images, (1, 28, 28))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny kernels: a second thread only waits on the first (and on other jobs)
    try:
        return {name: _tiny(name, out, (x, y), (x_eval, y_eval), seed) for name in TINY}
    finally:
        torch.set_num_threads(threads)


def _tiny(
    name: str, out: Path, train: tuple[np.ndarray, ...], test: tuple[np.ndarray, ...], seed: int
) -> dict[str, Any]:
    shape = INPUT_SHAPES[name]
    x, x_eval = (a.reshape(len(a), *shape) for a in (train[0], test[0]))
    torch.manual_seed(seed)
    model = FACTORIES[name](**TINY[name])
    zx.fit(model, x, train[1], epochs=1, batch_size=32, lr=1e-2, seed=seed)
    weight = kill_channel(model, DEAD_BLOCK, DEAD_CHANNEL) if name == "zoo-mobilenet" else None
    onnx_path = zx.export(model, x_eval[:2], out / name / "model.onnx")
    entry = {
        "onnx": onnx_path,
        "eval": zx.write_eval(out / name / "eval.npz", x_eval, test[1]),
        "module": model,
        "input_shape": shape,
    }
    if weight is not None:
        entry["dead_channel"] = {"conv": conv_reading(onnx_path, weight), "weight": weight, "channel": DEAD_CHANNEL}
    return entry


def dead_kernel(path: Path, weight: str, channel: int) -> np.ndarray:
    """The ``channel``-th output kernel of initializer ``weight`` in the ONNX file at ``path``."""
    init = next(i for i in onnx.load(str(path)).graph.initializer if i.name == weight)
    return onnx.numpy_helper.to_array(init)[channel]
