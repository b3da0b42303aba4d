"""Examples for a custom model: read a data file, preprocess it as declared, split off calibration.

Supported files: ``.npz`` (arrays ``x`` and optionally ``y``), ``.parquet`` / ``.csv``
(a ``label`` column plus either a ``text`` column or numeric feature columns), an image
folder with ``labels.csv`` (``file,label``), and for text similarity a pairs file with
``text1, text2, score`` columns (``.csv``/``.tsv``/``.parquet``). Anything else is an error
naming the file.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_compression.byo.spec import InputSpec


@dataclass(frozen=True)
class Examples:
    """Model-ready examples: ``x`` (N, *shape) after preprocessing, or ``texts``; ``y`` labels or None."""

    x: np.ndarray | None = None
    texts: tuple[str, ...] | None = None
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else len(self.x) if self.x is not None else 0

    def take(self, idx: np.ndarray) -> Examples:
        return Examples(
            x=None if self.x is None else self.x[idx],
            texts=None if self.texts is None else tuple(self.texts[i] for i in idx),
            y=None if self.y is None else self.y[idx],
        )


def _frame(path: Path):  # type: ignore[no-untyped-def]  # pandas is typed loosely on purpose
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    except Exception as e:
        raise ValueError(f"cannot read eval data {path.name}: {e}") from e
    raise ValueError(f"unsupported eval data file {path.name}: use .npz, .parquet, .csv, .tsv or an image folder")


def read_raw(path: Path, spec: InputSpec) -> Examples:
    """The examples in ``path`` before normalization (images scaled to [0, 1])."""
    if path.is_dir():
        return _image_folder(path, spec)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z:
                    raise ValueError(f"eval data {path.name} has no array 'x' (found {sorted(z.files)})")
                return Examples(x=z["x"], y=z.get("y", None))
        except (OSError, EOFError, zipfile.BadZipFile) as e:  # a truncated or non-zip file
            raise ValueError(f"corrupt eval data {path.name}: {e}") from e
    df = _frame(path)
    y = df.pop("label").to_numpy() if "label" in df.columns else None
    if spec.is_text:
        if "text" not in df.columns:
            raise ValueError(f"eval data {path.name} has no 'text' column (columns: {list(df.columns)})")
        return Examples(texts=tuple(df["text"].astype(str)), y=y)
    if len(df.columns) == 1 and df[df.columns[0]].dtype == object:  # one column of arrays
        x = np.stack([np.asarray(v) for v in df[df.columns[0]]])
    else:
        x = df.to_numpy()
    return Examples(x=x, y=y)


def _image_folder(folder: Path, spec: InputSpec) -> Examples:
    import pandas as pd
    from PIL import Image

    labels = folder / "labels.csv"
    if not labels.is_file():
        raise ValueError(f"image folder {folder.name} has no labels.csv (columns file,label)")
    table = pd.read_csv(labels)
    if list(table.columns[:2]) != ["file", "label"]:
        raise ValueError(f"{folder.name}/labels.csv must have columns file,label; got {list(table.columns)}")
    if len(spec.shape) != 3 or spec.shape[0] not in (1, 3):
        raise ValueError(f"InputSpec.shape must be [channels (1 or 3), height, width] for images, got {spec.shape}")
    c, h, w = spec.shape
    images = []
    for name in table["file"]:
        try:
            img = Image.open(folder / str(name)).convert("L" if c == 1 else "RGB")
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read image {folder.name}/{name}: {e}") from e
        arr = np.asarray(img, dtype=np.float32) / 255.0
        images.append(arr[None] if c == 1 else arr.transpose(2, 0, 1))
    return Examples(x=np.stack(images), y=table["label"].to_numpy())


def preprocess(raw: Examples, spec: InputSpec, where: str) -> Examples:
    """Cast, reshape to (N, *spec.shape) and normalize; a shape mismatch names the spec field."""
    if spec.is_text or raw.x is None:
        return raw
    x = np.asarray(raw.x)
    n = len(x)
    per_example = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    if per_example != int(np.prod(spec.shape)):
        raise ValueError(
            f"{where}: examples have shape {list(x.shape[1:])} ({per_example} values) but "
            f"InputSpec.shape is {list(spec.shape)} ({int(np.prod(spec.shape))} values)"
        )
    x = x.reshape(n, *spec.shape)
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{where}: examples are not numeric (dtype {x.dtype})")
    if spec.dtype.startswith("float"):
        x = x.astype(np.float32)
        x = (x - _per_channel(spec.channel_values("mean"), x.ndim)) / _per_channel(spec.channel_values("std"), x.ndim)
        if not np.isfinite(x).all():
            raise ValueError(f"{where}: examples contain NaN or Inf values")
    x = x.astype(spec.dtype)
    y = None if raw.y is None else np.asarray(raw.y)
    return Examples(x=x, y=y)


def _per_channel(values: tuple[float, ...], ndim: int) -> np.ndarray:
    """One value for all, or one per channel (axis 1), shaped to broadcast over a batch."""
    arr = np.array(values, np.float32)
    return arr.reshape(1, len(arr), *([1] * (ndim - 2))) if len(arr) > 1 else arr


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (eval indices, calibration indices): disjoint, each sorted, calibration ~``fraction``."""
    if n < 2:
        raise ValueError(f"cannot split {n} example(s) into evaluation and calibration sets")
    perm = np.random.default_rng(seed).permutation(n)
    k = min(max(1, round(fraction * n)), n - 1)
    return np.sort(perm[k:]), np.sort(perm[:k])


def synthetic(spec: InputSpec, n: int, seed: int) -> Examples:
    """``n`` standard-normal examples of the declared shape: shape checks only, no real data."""
    rng = np.random.default_rng(seed)
    if spec.dtype.startswith("float"):
        return Examples(x=rng.standard_normal((n, *spec.shape)).astype(spec.dtype))
    return Examples(x=rng.integers(0, 2, (n, *spec.shape)).astype(spec.dtype))


def read_pairs(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Similarity pairs: (first texts, second texts, human scores)."""
    df = _frame(path)
    missing = sorted({"text1", "text2", "score"} - set(df.columns))
    if missing:
        raise ValueError(f"pairs file {path.name} lacks column(s) {missing} (needs text1, text2, score)")
    return list(df["text1"].astype(str)), list(df["text2"].astype(str)), df["score"].to_numpy(dtype=np.float64)
