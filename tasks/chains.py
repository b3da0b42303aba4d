"""Run a chain of recipe steps on one catalogue model: the library's chain runner
(``model_compression/chain.py``) with the model's kind answering what the steps ask."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_compression.chain import Check, run_chain
from model_compression.config import load
from model_compression.registry import STEPS, technique_config
from tasks.core.project import Project
from tasks.kinds.base import KindContext
from tasks.pools import kernel_profile

if TYPE_CHECKING:
    from torch import nn


def config(project: Project, model: str, technique: str) -> Any:
    """The validated config of ``technique`` (score, prune, quantize, factorize) from
    ``model``'s effective section."""
    return technique_config(technique, project.section(model, technique), f"{model}.{technique}")


def prune_step(cfg: Any) -> tuple[str, Any]:
    """The recipe step a ``prune`` section (a ``MagnitudePruneConfig``) stands for: magnitude
    pruning, or with scope ``sensitive`` the sensitivity-allocated kind (per-tensor
    sparsities from calibration). The configs come through the registry: a stage that
    prunes declares those modules as its code."""
    if cfg.scope != "sensitive":
        return "prune", cfg
    sensitive = load(STEPS["prune_sensitive"].config)
    return "prune_sensitive", sensitive(sparsity=cfg.sparsity, min_numel=cfg.min_numel, skip=cfg.skip)


def step_modules(*steps: str) -> list[str]:
    """The modules that recipe ``steps`` run: what a stage running them declares as code."""
    return sorted({m for step in steps for m in STEPS[step].modules()})


def _nothing() -> None:
    return None


def apply(
    project: Project,
    model: str,
    steps: Sequence[tuple[str, Any]],
    dst: Path,
    *,
    torch_model: nn.Module | None,
    onnx: Path | None = None,
    preset: str = "",
    teacher: nn.Module | None = None,
    check: Check = _nothing,
) -> tuple[list[dict[str, Any]], nn.Module | None]:
    """Write ``steps`` applied to ``model`` at ``dst`` (ONNX); returns (what each step did,
    the torch model after the torch steps). Without ``torch_model`` the chain starts from
    ``onnx`` (default: the fp32 baseline's graph). Intermediate files go beside ``dst``."""
    ctx = KindContext(project.kind(model), project, model, preset, teacher)
    ctx.kernels = kernel_profile(project, preset) if preset else None
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".chain-") as tmp:
        path, done, net = run_chain(
            steps, ctx, Path(tmp), torch_model=torch_model, onnx=onnx or project.artifact(model, "baseline"),
            check=check,
        )  # fmt: skip
        shutil.move(str(path), dst)
    return done, net
