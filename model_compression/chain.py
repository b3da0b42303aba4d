"""The one chain runner: a list of registered steps applied in order to one model.

Recipes (params.yaml ``recipes:``), the recipe search's trials and the single-technique
stages all run through ``run_chain``. Torch steps edit a copy of the torch model, which is
then exported once; ONNX steps rewrite the exported graph. A model with no torch weights
(an ONNX file, or a distilled student's graph) runs each torch step in its ONNX form,
where the step has one (magnitude pruning, SVD), and is refused with ``NotApplicable``
where it has none.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from model_compression.errors import NotApplicable
from model_compression.registry import STEPS

Forward = Callable[[nn.Module], torch.Tensor]
PROBE_SAMPLES = 32  # calibration samples the sensitivity steps measure distortion on


class ChainContext(Protocol):
    """What the steps ask of the model's kind (``tasks/kinds`` provides it).

    Attributes:
        teacher: the fp32 torch model (fine-tuning distils from it), or None.
        preset: the int8 preset of the target hardware (``quantize/presets``).
        kernels: the target pool's kernel profile for that preset (``quantize/kernels``),
            or None when the pool has none: int8 then keeps its defaults.
    """

    teacher: nn.Module | None
    preset: str
    kernels: dict[str, Any] | None

    def export(self, module: nn.Module, path: Path) -> None:
        """Write ``module`` as ONNX at ``path``, with the model's inputs and outputs."""

    def calibration(self) -> list[dict[str, np.ndarray]]:
        """Calibration batches (never evaluation data), as ONNX feed dicts."""

    def finetune(self, net: nn.Module, teacher: nn.Module, cfg: Any) -> list[float]:
        """Fine-tune ``net`` toward ``teacher`` on the kind's training data; the losses."""


Check = Callable[[], None]


def _nothing() -> None:
    return None


def run_chain(
    steps: Sequence[tuple[str, Any]],
    ctx: ChainContext,
    workdir: Path,
    *,
    torch_model: nn.Module | None,
    onnx: Path,
    check: Check = _nothing,
) -> tuple[Path, list[dict[str, Any]], nn.Module | None]:
    """Apply ``steps`` (``(name, config)``, torch steps first) and return (the final ONNX
    file in ``workdir``, what each step did, the torch model after the torch steps or
    None). With ``torch_model`` the torch steps run on a copy of it and the result is
    exported (even when no step changed it); without, the chain starts from the ``onnx``
    file. ``check()`` runs before each step (a budget)."""
    workdir.mkdir(parents=True, exist_ok=True)
    done: list[dict[str, Any]] = []
    current, net = onnx, None
    rest = list(steps)
    if torch_model is not None:
        net = copy.deepcopy(torch_model)
        while rest and STEPS[rest[0][0]].runs_on == "torch":
            step, cfg = rest.pop(0)
            check()
            net, info = STEPS[step].handler("torch")(net, cfg, ctx)
            done.append({"step": step, **info})
        check()
        current = workdir / "step0.onnx"
        ctx.export(net, current)
    for i, (step, cfg) in enumerate(rest, 1):
        check()
        spec = STEPS[step]
        if spec.onnx is None:
            raise NotApplicable(f"step {step!r} needs the torch model, and this model has only an ONNX graph")
        nxt = workdir / f"step{i}-{step}.onnx"
        info = spec.handler("onnx")(current, nxt, cfg, ctx)
        done.append({"step": step, **info, "onnx_bytes": os.path.getsize(nxt)})
        current = nxt
    return current, done, net


def probe_forward(feeds: list[dict[str, np.ndarray]], n: int) -> tuple[list[dict[str, torch.Tensor]], Forward]:
    """(the first ``n`` samples of ``feeds``, one at a time; ``forward(module)``, which runs
    a torch module on each and stacks its flattened outputs): what sensitivity is measured on."""
    samples: list[dict[str, torch.Tensor]] = []
    for feed in feeds:
        batch = len(next(iter(feed.values())))
        for i in range(batch):
            if len(samples) >= n:
                break
            samples.append({k: torch.from_numpy(np.asarray(v[i : i + 1])) for k, v in feed.items()})

    def forward(module: nn.Module) -> torch.Tensor:
        wanted = set(inspect.signature(module.forward).parameters)
        outs = []
        for s in samples:
            # keywords where forward names them; a custom factory's forward(x) positionally
            out = module(**s) if set(s) <= wanted else module(*s.values())
            outs.append(out[0] if isinstance(out, tuple) else out)
        return torch.cat([o.reshape(1, -1) for o in outs])

    return samples, forward
