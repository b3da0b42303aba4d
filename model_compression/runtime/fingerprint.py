"""A hardware fingerprint: what a latency number was measured on."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import onnxruntime as ort

from model_compression.runtime.cpu import cpu, simd_flags


def fingerprint() -> dict[str, object]:
    """CPU model and SIMD flags, core count, memory (GiB), onnxruntime version and its
    execution providers, and the GPUs (name, driver) where ``nvidia-smi`` finds any."""
    model = cpu()[0]
    mem_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        mem_gib = round(kb / 2**20, 1)
    return {
        "cpu": model,
        "machine": platform.machine(),
        "flags": simd_flags(),
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "gpus": _gpus(),
    }


def _gpus() -> list[dict[str, str]]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    rows = [line.split(", ") for line in out.strip().splitlines() if ", " in line]
    return [{"name": r[0], "driver": r[1]} for r in rows]
