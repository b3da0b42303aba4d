"""Fashion-MNIST from its four idx ``.gz`` files (Debian's ``dataset-fashion-mnist``).

Images come back as uint8 arrays (N, 28, 28), labels as int64 (N,), in the official
60k train / 10k test split.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
MEAN, STD = 0.2860, 0.3530  # training-set pixel statistics, pixels scaled to [0, 1]


def read_idx(path: Path) -> np.ndarray:
    """Parse one gzip'd idx file, checking its magic number and declared size."""
    try:
        raw = gzip.decompress(Path(path).read_bytes())
    except (OSError, EOFError) as e:
        raise ValueError(f"corrupt idx file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, found {data.size} bytes")
    return data.reshape(dims)


def load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load ``split`` ("train" or "test") from ``folder``: (images uint8, labels int64)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images = read_idx(Path(folder) / FILES[f"{split}_images"])
    labels = read_idx(Path(folder) / FILES[f"{split}_labels"]).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")
    return images, labels


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), standardized with the training stats."""
    x = images.astype(np.float32)[:, None] / 255.0
    return (x - MEAN) / STD
