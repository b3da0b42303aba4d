"""Kernel-ISA pins: the environment the stages that train or fine-tune run under.

torch picks its CPU kernels by what the processor offers (AVX2, AVX-512, AMX in ATen,
oneDNN and MKL), and each choice changes the last bits of a training run, so a CNN trained
on an Intel Xeon with AMX and on an AMD EPYC came out as different bytes. A profile pins
those choices. It must be in the environment before torch first runs a kernel, so a stage
that needs it runs in a fresh ``python -m tasks`` process started with the profile
(``Stage.run``); the record says which profile was in effect, and what the CPU was.

``params.yaml`` ``reproducibility.isa`` names the profile (default ``portable``):

- ``portable``: the same bytes on any x86-64 CPU, at a cost in training time measured in
  BENCHMARKS.md ("Vision over seeds and CPUs").
- ``native``: no pins; fastest, but the bytes hold for one CPU family only.

A new profile is one entry of ``PROFILES``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from model_compression.runtime.cpu import cpu, simd_flags

# Each profile: the environment variables it sets, read by ATen, oneDNN and MKL when they
# first run. Measured with ../shared/tools/isa_probe.py natively (AMD EPYC Zen 3) and under
# qemu-user as an Intel Haswell and an AMD EPYC-Milan (BENCHMARKS.md, "Vision over seeds and
# CPUs"): AVX2 pins alone still differ between Intel and AMD (MKL's AVX2 path and its
# vectorised sqrt are not correctly rounded, and each vendor rounds its own way); ATen's
# generic kernels, MKL's vendor-neutral COMPATIBLE path, no oneDNN or NNPACK (``TORCH_OFF``)
# and the fused Adam (``model_compression``'s optimisers: an exactly rounded sqrt) gave the
# same bytes on all three. OpenBLAS is left alone: no training step runs through NumPy.
PROFILES: dict[str, dict[str, str]] = {
    "portable": {
        "ATEN_CPU_CAPABILITY": "default",  # ATen's generic kernels, never AVX2/AVX-512 variants
        "MKL_CBWR": "COMPATIBLE",  # MKL's conditional bitwise reproducibility: one vendor-neutral path
        "DNNL_MAX_CPU_ISA": "SSE41",  # oneDNN is off (TORCH_OFF); should anything reach it, its oldest JIT
    },
    "native": {},
}
# torch backends a profile switches off in its process: they pick kernels by CPU themselves
TORCH_OFF: dict[str, tuple[str, ...]] = {"portable": ("mkldnn", "nnpack"), "native": ()}
MARKER = "PIPELINE_ISA"  # set in a process started under a profile


def profile_name(params: dict[str, Any]) -> str:
    """The profile ``params.yaml`` asks for (``reproducibility.isa``, default ``portable``)."""
    name = str((params.get("reproducibility") or {}).get("isa", "portable"))
    if name not in PROFILES:
        raise ValueError(f"reproducibility.isa must be one of {sorted(PROFILES)}, got {name!r}")
    return name


PINNED_VARS = frozenset(k for env in PROFILES.values() for k in env)


def environment(name: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a process started under profile ``name`` gets: ``base`` (default
    this process's) without any profile's variables, plus ``name``'s and the marker naming it
    (which tells ``pin_at_start`` in that process that its profile is chosen)."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in PINNED_VARS}
    return {**env, **PROFILES[name], MARKER: name}


def in_effect(name: str) -> bool:
    """Whether this process runs under exactly profile ``name``'s pins, set at its start
    (``native``: no pins at all)."""
    pins = {k: os.environ[k] for k in PINNED_VARS if k in os.environ}
    return pins == PROFILES[name] and (not pins or os.environ.get(MARKER) == name)


def pin_at_start(root: Path) -> str | None:
    """Put the profile ``root/params.yaml`` names into this process's environment, if no
    kernel library is loaded yet (the pipeline's entry points: ``python -m tasks`` under
    ``dvc repro``, ``python -m flows.nightly``); its stages then need no child process.
    Returns the profile pinned, or None (too late, no params.yaml, or nothing to pin)."""
    if MARKER in os.environ or any(m in sys.modules for m in ("torch", "numpy")):
        return None  # a parent chose this process's profile, or the kernels are loaded already
    if not (root / "params.yaml").is_file():
        return None
    try:
        name = profile_name(yaml.safe_load((root / "params.yaml").read_text()) or {})
    except (yaml.YAMLError, ValueError, AttributeError):
        return None  # the project's own check names a broken params.yaml, with its path
    if not PROFILES[name]:
        return None
    os.environ.update(environment(name, {}))
    return name


def configure_torch(name: str) -> None:
    """Switch off the torch backends profile ``name`` excludes (process-wide)."""
    import torch

    if "mkldnn" in TORCH_OFF[name]:
        torch.backends.mkldnn.set_flags(False)
    if "nnpack" in TORCH_OFF[name]:
        torch.backends.nnpack.set_flags(False)


def effective(name: str) -> dict[str, Any]:
    """What a stage record keeps: the profile, its pins as this process has them, the
    kernel capability torch chose, and the CPU it ran on."""
    import torch

    return {
        "profile": name,
        "pinned": in_effect(name),
        "env": {k: os.environ.get(k) for k in sorted(PINNED_VARS)},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "nnpack": bool(torch._C._get_nnpack_enabled()),
        "cpu": cpu()[0],
        "cpu_flags": simd_flags(),  # which x86 family built it: what a cross-CPU rebuild compares
    }
