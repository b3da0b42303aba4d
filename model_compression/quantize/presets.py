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

from model_compression.errors import NotApplicable
from model_compression.quantize.checks import output_agreement, saturated_biases, zero_dead_channels
from model_compression.quantize.kernels import choose, fmt_fields
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
    calibrated on the kind's calibration samples when static. Output channels whose weights
    are all below 1e-6 are set exactly to zero first (``zeroed_dead_channels``); a node whose
    int32 bias still comes out clipped is excluded from quantization (``protected_nodes``
    says which and why), and the graph's
    outputs are checked against the float graph's on the calibration samples: a graph
    below ``cfg.min_cosine`` is not built (``NotApplicable``, with the numbers)."""
    cfg = apply_preset(cfg, ctx.preset)
    cfg, profiled = apply_profile(cfg, getattr(ctx, "kernels", None), src)
    feeds = ctx.calibration()
    zeroed: dict[str, list[int]] = {}
    if cfg.mode == "static":  # near-dead channels exactly to zero: their int32 bias cannot saturate
        cleaned = dst.with_name(dst.stem + ".zeroed.onnx")
        zeroed = zero_dead_channels(src, cleaned)
        src = cleaned if zeroed else src
    quantize(src, dst, cfg, feeds if cfg.mode == "static" else None)
    protected = saturated_biases(dst) if cfg.mode == "static" else {}
    if protected:
        cfg = dataclasses.replace(cfg, exclude_nodes=cfg.exclude_nodes + tuple(sorted(protected)))
        quantize(src, dst, cfg, feeds)
        left = saturated_biases(dst)
        if left:
            raise NotApplicable(
                f"int32 biases still saturate in {sorted(left)} after keeping {sorted(protected)} in float"
            )
    check = output_agreement(src, dst, feeds)
    if not check["finite"] or check["cosine_mean"] < cfg.min_cosine:
        raise NotApplicable(
            f"int8 outputs diverge from float on the calibration samples: mean cosine {check['cosine_mean']:.4f} "
            f"< {cfg.min_cosine} (min {check['cosine_min']:.4f}, finite {bool(check['finite'])})"
        )
    return {
        "mode": cfg.mode,
        "preset": ctx.preset,
        "reduce_range": cfg.reduce_range,
        "weight_type": cfg.weight_type,
        "quantized_nodes": count_quantized_nodes(dst),
        "calibration_batches": len(feeds) if cfg.mode == "static" else 0,
        "protected_nodes": {
            node: f"int32 bias {v['bias']} saturates in {v['saturated']} of {v['channels']} channels: kept in float"
            for node, v in protected.items()
        },
        "calibration_check": check,
        "zeroed_dead_channels": zeroed,
        "quant_format": cfg.quant_format or "qdq",
        "activation_type": cfg.activation_type or "uint8",
        "kernel_profile": profiled,
    }


def apply_profile(
    cfg: OnnxInt8Config, profile: Mapping[str, Any] | None, src: Path
) -> tuple[OnnxInt8Config, dict[str, Any]]:
    """``cfg`` with its unset format fields and float nodes taken from the pool's kernel
    ``profile`` (``kernels.choose``): what it decided and why, for the record. Without a
    profile, or for dynamic int8, nothing changes. Fields the recipe sets win."""
    if profile is None or cfg.mode != "static":
        return cfg, {"used": False}
    import onnx

    decided = choose(dict(profile), onnx.load(str(src), load_external_data=False))
    qformat, act = fmt_fields(decided["format"])
    kept = tuple(n for n in decided["float_nodes"] if n not in cfg.exclude_nodes and n not in cfg.only_nodes)
    cfg = dataclasses.replace(
        cfg, quant_format=cfg.quant_format or qformat, activation_type=cfg.activation_type or act,  # type: ignore[arg-type]
        exclude_nodes=cfg.exclude_nodes + kept,
    )  # fmt: skip
    return cfg, {"used": True, "measured_on": profile.get("machine"), **decided}
