"""Fashion-MNIST from its four idx ``.gz`` files (Debian's ``dataset-fashion-mnist``).

Images come back as uint8 arrays (N, 28, 28), labels as int64 (N,), in the official
60k train / 10k test split. With ``validation`` > 0 the last fraction of the training images
is the "validation" split, carved out for the pipeline's choices (search, accuracy
control), and "train" is the rest: nothing is both trained on and chosen with, and the
test split only reports.
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


SPLITS = ("train", "validation", "test")


def load_split(folder: Path, split: str, validation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Load ``split`` ("train", "validation" or "test") from ``folder``: (images uint8, labels int64).

    ``validation`` (fraction in [0, 0.5], default 0) of the official training images, the last
    ones (the file is already shuffled), form "validation"; "train" is the images before them.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 <= validation <= 0.5:
        raise ValueError(f"validation must be a fraction in [0, 0.5], got {validation}")
    official = "test" if split == "test" else "train"
    images = read_idx(Path(folder) / FILES[f"{official}_images"])
    labels = read_idx(Path(folder) / FILES[f"{official}_labels"]).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{official}: {len(images)} images but {len(labels)} labels")
    if official == "test":
        return images, labels
    cut = len(images) - round(len(images) * validation)
    if split == "validation" and cut == len(images):
        raise ValueError(f"no validation split: validation={validation} of {len(images)} training images")
    part = slice(cut, None) if split == "validation" else slice(0, cut)
    return images[part], labels[part]


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), standardized with the training stats."""
    x = images.astype(np.float32)[:, None] / 255.0
    return (x - MEAN) / STD
