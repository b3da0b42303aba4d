"""Train the zoo's three models on Fashion-MNIST and write them as ``kind: custom`` inputs.

python -m bench.zoo.build OUT_DIR [--epochs N] [--seed S] [--threads T] [--data FOLDER]

For each model: ``OUT_DIR/<name>/model.onnx`` (opset 17, input ``pixels`` with a dynamic
batch axis, output ``logits``, BatchNorm left unfolded) and ``OUT_DIR/<name>/eval.npz``
(``x`` float32 normalised as the model expects, ``y`` int64: the first ``EVAL_IMAGES``
images of the official test split). ``OUT_DIR/zoo.json`` records parameters, ONNX bytes,
fp32 accuracy measured with onnxruntime on the eval file, training seconds and sha256s;
a params.yaml catalogue entry per model is printed to paste under ``models:``.

Training uses all 60,000 training images, one thread by default: on a shared two-core
machine a second thread slows the small kernels (measured 3-5x), and a fixed thread
count keeps the weights, and so the sha256s, repeatable for a seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.zoo import export as zx
from bench.zoo.models import FACTORIES, INPUT_SHAPES
from model_compression.hashing import sha256_tree

FMNIST = Path("/usr/share/datasets/fashion-mnist")
EVAL_IMAGES = 2000
MAX_DIFF = 1e-4  # torch vs onnxruntime logits; the fp32 exports agree to about 1e-6


@dataclass(frozen=True)
class Recipe:
    """How one zoo model is trained: factory keywords, epochs, batch size, peak learning rate.

    The epochs keep each model's training to a few minutes on one CPU thread. Measured
    on a shared two-core machine (load 4-6): MobileNet 378 s for its epoch, ViT 289 s for
    two, GRU 144 s for two; an idle core takes about half the MobileNet's time.
    """

    epochs: int
    batch_size: int = 256
    lr: float = 3e-3
    factory_args: dict[str, Any] = field(default_factory=dict)


RECIPES = {
    # batch 128: twice the steps of 256 at about the same cost per image; BatchNorm's running
    # statistics need them to settle
    "zoo-mobilenet": Recipe(epochs=1, batch_size=128),
    "zoo-vit": Recipe(epochs=2, lr=1e-3),
    "zoo-gru": Recipe(epochs=2),
}


def build_model(name: str, out: Path, data: Path, seed: int, epochs: int | None) -> dict[str, Any]:
    """Train, export and check zoo model ``name`` into ``out/<name>``; return its zoo.json row.

    Raises:
        RuntimeError: when onnxruntime's logits differ from torch's by more than ``MAX_DIFF``.
    """
    recipe, shape = RECIPES[name], INPUT_SHAPES[name]
    x, y = zx.fashion_mnist(data, "train", None, shape)
    x_eval, y_eval = zx.fashion_mnist(data, "test", EVAL_IMAGES, shape)
    torch.manual_seed(seed)
    model = FACTORIES[name](**recipe.factory_args)
    n_epochs = recipe.epochs if epochs is None else epochs
    seconds = zx.fit(model, x, y, n_epochs, recipe.batch_size, recipe.lr, seed)
    onnx_path = zx.export(model, x_eval[:2], out / name / "model.onnx")
    diff = zx.max_abs_diff(model, onnx_path, x_eval)
    if diff > MAX_DIFF:
        raise RuntimeError(f"{name}: onnxruntime and torch logits differ by {diff:.2e} (> {MAX_DIFF:.0e})")
    eval_path = zx.write_eval(out / name / "eval.npz", x_eval, y_eval)
    return {
        "name": name,
        "factory": f"bench.zoo.models:{FACTORIES[name].__name__}",
        "factory_args": recipe.factory_args,
        "input_shape": list(shape),
        "params": sum(p.numel() for p in model.parameters()),
        "onnx_bytes": onnx_path.stat().st_size,
        "accuracy": zx.accuracy(zx.onnx_logits(onnx_path, x_eval), y_eval),
        "eval_examples": len(y_eval),
        "max_abs_diff": diff,
        "epochs": n_epochs,
        "train_examples": len(y),
        "train_seconds": round(seconds, 1),
        "model": str(onnx_path),
        "model_sha256": sha256_tree(onnx_path),
        "eval": str(eval_path),
        "eval_sha256": sha256_tree(eval_path),
    }


def catalogue_entry(
    row: dict[str, Any], tolerance: float = 0.01, calibration_split: float = 0.2, serving_batch: int = 32
) -> str:
    """The params.yaml entry (indented to sit under ``models:``) of one zoo.json row.

    ``serving_batch`` is declared first in ``bench.batch_sizes`` (the batch the int8 speed
    gate and the targets read); batch 1 is benchmarked too. A 28x28 classifier is served
    in batches: at batch 1 its 0.3 ms call is mostly per-call overhead.

    ``arch.input.mean``/``std`` stay at their defaults (0 and 1): ``eval.npz`` is already
    normalised, and the format follows from the ``.onnx`` suffix.
    """
    shape = ", ".join(str(d) for d in row["input_shape"])
    return (
        f"  {row['name']}:\n"
        "    kind: custom\n"
        f"    source: {{uri: {row['model']}, sha256: {row['model_sha256']}}}\n"
        f"    arch: {{input: {{name: {zx.INPUT}, shape: [{shape}]}}}}\n"
        f"    eval: {{task: classification, data: {row['eval']}, sha256: {row['eval_sha256']}, "
        f"calibration_split: {calibration_split}}}\n"
        f"    tolerance: {{accuracy: {tolerance}}}\n"
        f"    bench: {{batch_sizes: [{serving_batch}, 1], warmup: 10, runs: 50}}\n"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.zoo.build", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for every model (default: each recipe's)")
    parser.add_argument("--seed", type=int, default=0, help="weights and data order (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--data", type=Path, default=FMNIST, help=f"Fashion-MNIST folder (default {FMNIST})")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 0:
        parser.error(f"--epochs must be >= 0, got {args.epochs}")
    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    rows = []
    for name in RECIPES:
        rows.append(build_model(name, out, args.data, args.seed, args.epochs))
        r = rows[-1]
        print(
            f"{name}: {r['params']:,} params, {r['onnx_bytes']:,} ONNX bytes, accuracy {r['accuracy']:.4f}, "
            f"trained {r['train_seconds']} s ({r['epochs']} epochs), max |torch - ort| {r['max_abs_diff']:.1e}",
            file=sys.stderr,
        )
    zoo = {"seed": args.seed, "threads": args.threads, "numpy": np.__version__, "torch": torch.__version__}
    zoo["models"] = rows
    (out / "zoo.json").write_text(json.dumps(zoo, indent=2) + "\n")
    print("# params.yaml, under models:")
    print("".join(catalogue_entry(r) for r in rows), end="")
    return zoo


if __name__ == "__main__":
    main()
