"""Kind ``image-classifier``: the Fashion-MNIST CNN, trained by the pipeline itself.

Quality is test-set accuracy of the ONNX artifact (official 10k test split), plus top-1
agreement with fp32 and the test labels' code length (NLL, for MDL).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from model_compression import onnx_export
from model_compression.datasets import fashion_mnist as fm
from model_compression.evaluate import classification as cls_eval
from model_compression.models.fashion_cnn import CNNConfig, FashionCNN, TrainConfig, train
from model_compression.runtime.session import run_batched

INPUT, OUTPUT = "image", "logits"


def build_baseline(data_dir: Path, out: Path, arch: CNNConfig, cfg: TrainConfig) -> tuple[FashionCNN, list[float]]:
    """Train the CNN deterministically on the training split; write weights, arch and ONNX."""
    torch.manual_seed(cfg.seed)
    model = FashionCNN(arch)
    x, y = fm.load_split(data_dir, "train")
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


def onnx_logits(path: Path, x: np.ndarray, threads: int, batch_size: int = 500) -> np.ndarray:
    return run_batched(path, INPUT, x, threads, batch_size)


def evaluate(
    path: Path, data_dir: Path, threads: int, reference: np.ndarray | None, limit: int = 0
) -> tuple[dict[str, float], np.ndarray]:
    """Test-set metrics of the ONNX classifier at ``path``; returns (metrics, logits)."""
    x, y = fm.load_split(data_dir, "test")
    if limit:
        x, y = x[:limit], y[:limit]
    logits = onnx_logits(path, fm.normalize(x), threads)
    metrics = {
        "accuracy": cls_eval.accuracy(logits, y),
        "agreement_to_fp32": 1.0 if reference is None else cls_eval.agreement(logits, reference),
        "test_nll_bits": cls_eval.nll_nats(logits, y) / np.log(2),
    }
    if not all(np.isfinite(v) for v in metrics.values()):
        raise ValueError(f"non-finite quality metrics for {path}: {metrics}")
    return metrics, logits


def calibration_feeds(data_dir: Path, n: int, batch_size: int = 32) -> list[dict[str, np.ndarray]]:
    """The first ``n`` training images in batches: calibration never sees the test split."""
    x, _ = fm.load_split(data_dir, "train")
    xn = fm.normalize(x[:n])
    return [{INPUT: xn[i : i + batch_size]} for i in range(0, len(xn), batch_size)]


def train_data(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = fm.load_split(data_dir, "train")
    return fm.normalize(x), y
