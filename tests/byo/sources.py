"""A team's own model, built the way a user would: a small MLP trained on sklearn's digits,
saved as safetensors (with its factory module), exported to ONNX, scripted to TorchScript
and exported as a ``.pt2`` program; plus the digits test split as ``.npz``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch

from model_compression.hashing import sha256_tree

FACTORY = textwrap.dedent(
    '''
    """The team's model code: a small MLP for 8x8 digit images."""
    from torch import nn


    def mlp(inputs: int = 64, hidden: int = 64, classes: int = 10) -> nn.Module:
        return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, classes))
    '''
)


def build(out: Path, module_name: str = "team_models") -> dict[str, Path]:
    """Write the factory module, the four model files and the eval data into ``out``."""
    import importlib
    import sys

    from safetensors.torch import save_file
    from sklearn.datasets import load_digits

    out.mkdir(parents=True, exist_ok=True)
    (out / f"{module_name}.py").write_text(FACTORY)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    mod = importlib.import_module(module_name)
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))
    train, test = perm[:1200], perm[1200:]
    torch.manual_seed(0)
    model = mod.mlp()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy((x[train] - 0.0) / 16.0), torch.from_numpy(y[train])
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.eval()
    files = {"factory": out / f"{module_name}.py", "safetensors": out / "mlp.safetensors"}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, files["safetensors"])
    example = torch.zeros(2, 64)
    files["onnx"] = out / "mlp.onnx"
    dynamic = {"pixels": {0: "batch"}, "logits": {0: "batch"}}
    torch.onnx.export(model, (example,), str(files["onnx"]), input_names=["pixels"], output_names=["logits"],
                      dynamic_axes=dynamic, opset_version=17, dynamo=False)  # fmt: skip
    files["torchscript"] = out / "mlp.pt"
    torch.jit.trace(model, example).save(str(files["torchscript"]))
    files["pt2"] = out / "mlp.pt2"
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=({0: batch},)), str(files["pt2"]))
    files["data"] = out / "digits_test.npz"
    np.savez(files["data"], x=x[test], y=y[test])
    return files


def entry(files: dict[str, Path], fmt: str, **overrides: object) -> dict[str, object]:
    """A catalogue entry for the ``fmt`` model file, as a user writes it."""
    arch: dict[str, object] = {"format": fmt, "input": {"name": "pixels", "shape": [64], "mean": 0.0, "std": 16.0}}
    if fmt == "safetensors":
        arch.update(factory="team_models:mlp", factory_args={"hidden": 64})
    e: dict[str, object] = {
        "kind": "custom",
        "source": {"uri": str(files[fmt]), "sha256": sha256_tree(files[fmt])},
        "seed": None,
        "arch": arch,
        "train": None,
        "eval": {
            "task": "classification",
            "data": str(files["data"]),
            "sha256": sha256_tree(files["data"]),
            "calibration_split": 0.25,
            "top_k": 3,
        },
        "tolerance": {"accuracy": 0.05},
        "score": {"bits": 8, "min_numel": 256},
        "prune": {"sparsity": 0.5, "scope": "global", "min_numel": 256},
        "quantize": {"mode": "static", "per_channel": True},
        "factorize": {"energy": 0.95, "max_param_ratio": 0.95},
        # asked for every format: only safetensors + factory can build a student
        "distill": {"student_args": {"hidden": 32}, "train": {"epochs": 60, "batch_size": 32, "lr": 0.005}},
        "recipe": None,
        "search": None,
        "bench": {"batch_sizes": [1], "warmup": 2, "runs": 5},
    }
    e.update(overrides)
    return e
