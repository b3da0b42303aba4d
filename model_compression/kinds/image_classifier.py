"""Kind ``image-classifier``: the Fashion-MNIST CNN, trained by the pipeline itself.

Built, loaded, exported and calibrated here; its quality suite is ``evaluate/images.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from model_compression import onnx_export
from model_compression.datasets import fashion_mnist as fm
from model_compression.models.fashion_cnn import CNNConfig, FashionCNN, TrainConfig, train

INPUT, OUTPUT = "image", "logits"


@dataclass(frozen=True)
class ImageEvalConfig:
    """Evaluation settings.

    Attributes:
        limit: evaluate on the first N images of a split only; 0 (default) means all of it.
        calibration: training images the int8 calibration and sensitivity probes use (default 256).
        validation: fraction of the training images held out as the validation split
            (default 0.1: 6,000 of Fashion-MNIST's 60k), in [0, 0.5]. The pipeline's choices
            (search, int8 accuracy control) are made on it; training, fine-tuning and
            calibration never see it; the test split only reports. 0: no validation split,
            and choices fall back to the test split (recorded as such).
    """

    limit: int = 0
    calibration: int = 256
    validation: float = 0.1

    def __post_init__(self) -> None:
        if self.limit < 0 or self.calibration < 1:
            raise ValueError(
                f"ImageEvalConfig: limit must be >= 0 and calibration >= 1, got {self.limit}, {self.calibration}"
            )
        if not 0.0 <= self.validation <= 0.5:
            raise ValueError(f"ImageEvalConfig: validation must be a fraction in [0, 0.5], got {self.validation}")


def build_baseline(
    data_dir: Path, out: Path, arch: CNNConfig, cfg: TrainConfig, validation: float = 0.0
) -> tuple[FashionCNN, list[float]]:
    """Train the CNN deterministically on the training split (less its ``validation``
    fraction); write weights, arch and ONNX."""
    torch.manual_seed(cfg.seed)
    model = FashionCNN(arch)
    x, y = fm.load_split(data_dir, "train", validation)
    losses = train(model, fm.normalize(x), y, cfg)
    save(model, arch, out)
    return model, losses


def save(model: FashionCNN, arch: CNNConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    (out / "arch.json").write_text(json.dumps(asdict(arch), sort_keys=True) + "\n")
    export(model, out / "model.onnx")


def load(folder: Path) -> FashionCNN:
    """Rebuild the CNN from ``arch.json`` and safetensors weights (never pickle)."""
    try:
        spec = json.loads((folder / "arch.json").read_text())
        arch = CNNConfig(channels=(int(spec["channels"][0]), int(spec["channels"][1])), hidden=int(spec["hidden"]))
        state = load_file(folder / "model.safetensors")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"incomplete CNN folder {folder}: {e.filename} missing") from e
    except Exception as e:  # safetensors raises SafetensorError for a truncated file
        raise ValueError(f"corrupt CNN checkpoint in {folder}: {e}") from e
    for name, t in state.items():
        if not torch.isfinite(t).all():
            raise ValueError(f"weight {name!r} in {folder} contains NaN or Inf values")
    model = FashionCNN(arch)
    model.load_state_dict(state)
    return model.eval()


def export(model: torch.nn.Module, path: Path) -> Path:
    example = {INPUT: torch.zeros(2, 1, 28, 28)}
    return onnx_export.export(model, example, path, OUTPUT, {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})


def calibration_feeds(data_dir: Path, n: int, batch_size: int = 32) -> list[dict[str, np.ndarray]]:
    """The first ``n`` training images in batches: calibration never sees the validation or
    test split (the validation split is the training file's tail)."""
    x, _ = fm.load_split(data_dir, "train")
    xn = fm.normalize(x[:n])
    return [{INPUT: xn[i : i + batch_size]} for i in range(0, len(xn), batch_size)]


def train_data(data_dir: Path, validation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Normalised training images and labels, less the ``validation`` fraction."""
    x, y = fm.load_split(data_dir, "train", validation)
    return fm.normalize(x), y
