"""Transformer fusion: onnxruntime's optimizer rewrites attention, layer norms and GELU
into its fused CPU kernels (Attention, SkipLayerNormalization, BiasGelu, FastGelu).

Fusion is what makes int8 transformers fast on CPU: it removes the many small
elementwise nodes between the MatMuls, and the fused Attention has an int8 form
(QAttention) that ``quantize_dynamic`` targets. The embedding fusion
(EmbedLayerNormalization) is off by default: it reads the word-embedding table itself,
which would hide the table from ``embed_lowbit``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FUSED = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization", "BiasGelu", "FastGelu",
         "Gelu", "EmbedLayerNormalization")  # fmt: skip


@dataclass(frozen=True)
class TransformerFusionConfig:
    """Attributes:
    model_type: onnxruntime's model family: ``bert`` (encoders: BERT, MiniLM, RoBERTa), ``gpt2``
        or ``vit`` (default ``bert``).
    num_heads: attention heads; 0 lets onnxruntime read them from the graph, which fails on
        graphs exported with dynamic shapes: attention then stays unfused (default 0).
    hidden_size: model width; 0 lets onnxruntime detect it (default 0).
    embed_layer_norm: also fuse the embedding lookup with its layer norm (default False).
    attention: fuse attention into one Attention node (default True). Off, the attention
        MatMuls stay separate (int8 as MatMulInteger) and only the layer norms and GELU
        fuse: on some CPUs (AVX-512-VNNI, measured in BENCHMARKS.md) that int8 graph is faster
        than QAttention's.
    """

    model_type: str = "bert"
    num_heads: int = 0
    hidden_size: int = 0
    embed_layer_norm: bool = False
    attention: bool = True

    def __post_init__(self) -> None:
        if self.model_type not in ("bert", "gpt2", "vit"):
            raise ValueError(f"TransformerFusionConfig.model_type must be bert, gpt2 or vit, got {self.model_type!r}")
        if self.num_heads < 0 or self.hidden_size < 0:
            raise ValueError("TransformerFusionConfig.num_heads and hidden_size must be >= 0 (0 = detect)")


def fuse(src: str | Path, dst: str | Path, cfg: TransformerFusionConfig = TransformerFusionConfig()) -> dict[str, int]:
    """Write the fused graph of ``src`` at ``dst``; returns ``{fused op type: count}``.
    A graph in which nothing fuses raises ``NotApplicable``."""
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from model_compression.errors import NotApplicable

    opts = FusionOptions(cfg.model_type)
    opts.enable_embed_layer_norm = cfg.embed_layer_norm
    opts.enable_attention = cfg.attention
    # opt_level 0: the graph stays portable (no onnxruntime-session-level rewrites baked in)
    fused = optimize_model(str(src), model_type=cfg.model_type, num_heads=cfg.num_heads,
                           hidden_size=cfg.hidden_size, optimization_options=opts, opt_level=0)  # fmt: skip
    counts = collections.Counter(n.op_type for n in fused.model.graph.node if n.op_type in FUSED)
    if not counts:
        raise NotApplicable(f"nothing in {Path(src).name} fuses as a {cfg.model_type} transformer")
    domains = {n.domain for n in fused.model.graph.node} - {o.domain for o in fused.model.opset_import}
    fused.model.opset_import.extend(onnx.helper.make_opsetid(d, 1) for d in sorted(domains) if d)  # the contrib ops
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(fused.model, str(dst))
    return dict(sorted(counts.items()))


def recipe_step(src: Path, dst: Path, cfg: TransformerFusionConfig, ctx: Any) -> dict[str, Any]:
    """Recipe step ``fuse`` (``registry.STEPS``)."""
    return {"fused": fuse(src, dst, cfg)}
