"""Hardware presets for onnxruntime int8, chosen from a machine's fingerprint.

Follows Optimum's ``AutoQuantizationConfig`` presets (arm64, avx2, avx512, avx512_vnni)
with one deliberate difference: on x86 without VNNI the int8 dot product
(``VPMADDUBSW``, u8 x s8) saturates its 16-bit intermediate, so onnxruntime recommends
7-bit weights (``reduce_range``) there. Optimum's avx2 preset sidesteps it with u8
weights; per-channel s8 with ``reduce_range`` held quality better on MiniLM here.

=============  ===========  ============  =================================================
preset         weights      reduce_range  why
=============  ===========  ============  =================================================
arm64          int8         no            NEON/SDOT accumulates in 32 bits: no saturation
avx2           int8         yes           u8 x s8 pairs saturate in 16 bits without VNNI
avx512         int8         yes           as avx2: AVX-512 alone still lacks VNNI
avx512_vnni    int8         no            VPDPBUSD accumulates in 32 bits: full 8-bit range
=============  ===========  ============  =================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_compression.quantize.onnx_int8 import OnnxInt8Config, count_quantized_nodes, quantize

PRESETS: dict[str, dict[str, Any]] = {
    "arm64": {"weight_type": "int8", "reduce_range": False},
    "avx2": {"weight_type": "int8", "reduce_range": True},
    "avx512": {"weight_type": "int8", "reduce_range": True},
    "avx512_vnni": {"weight_type": "int8", "reduce_range": False},
}


def preset_for(fingerprint: Mapping[str, Any]) -> str:
    """The preset for a machine, from ``fingerprint["machine"]`` and ``["flags"]``.

    ARM (aarch64/arm64, or NEON/ASIMD flags) gives ``arm64``; x86 gives ``avx512_vnni``
    when VNNI is present (AVX-512 VNNI or AVX-VNNI), ``avx512`` with AVX-512F, else ``avx2``.
    """
    machine = str(fingerprint.get("machine", "")).lower()
    flags = {str(f).lower() for f in fingerprint.get("flags", ())}
    if machine in ("aarch64", "arm64") or flags & {"neon", "asimd"}:
        return "arm64"
    if flags & {"avx512_vnni", "avx_vnni"}:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def apply_preset(cfg: OnnxInt8Config, preset: str) -> OnnxInt8Config:
    """``cfg`` with its unset hardware fields (``None``) filled from ``preset``.

    Fields the recipe sets explicitly win over the preset: a user override is kept, and
    the record shows it.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown quantization preset {preset!r}; known: {sorted(PRESETS)}")
    fill = {k: v for k, v in PRESETS[preset].items() if getattr(cfg, k) is None}
    return dataclasses.replace(cfg, **fill)


def recipe_step(src: Path, dst: Path, cfg: OnnxInt8Config, ctx: Any) -> dict[str, Any]:
    """Recipe step ``int8``: onnxruntime int8 for the target's preset (``ctx.preset``),
    calibrated on the kind's calibration samples when static."""
    cfg = apply_preset(cfg, ctx.preset)
    feeds = ctx.calibration() if cfg.mode == "static" else None
    quantize(src, dst, cfg, feeds)
    return {
        "mode": cfg.mode,
        "preset": ctx.preset,
        "reduce_range": cfg.reduce_range,
        "weight_type": cfg.weight_type,
        "quantized_nodes": count_quantized_nodes(dst),
        "calibration_batches": len(feeds or []),
    }
