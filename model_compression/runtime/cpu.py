"""What the CPU is, from ``/proc/cpuinfo``: one reader for the hardware fingerprint, the
int8 kernel profile and the kernel-ISA record. Standard library only, so that it can run
before torch or onnxruntime is loaded (``tasks/core/isa.py`` pins their kernels first)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu() -> tuple[str, frozenset[str]]:
    """(model name, instruction-set flags) of this machine's CPU. Linux x86 says
    ``model name``/``flags``, Linux Arm ``Hardware``/``Features``; elsewhere the model is
    ``platform.processor()`` (or the architecture) and the flags are empty."""
    model, flags = "", set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine(), frozenset(flags)


# The instruction sets by which torch, oneDNN, MKL and onnxruntime pick their kernels
SIMD = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "neon", "asimd", "asimddp")


def simd_flags() -> list[str]:
    """Those of ``SIMD`` this CPU has, sorted: what a record keeps to say which family built it."""
    flags = cpu()[1]
    return sorted(f for f in SIMD if f in flags)
