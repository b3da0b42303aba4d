"""Structured pruning: remove whole conv channels, hidden neurons, attention heads and FFN
neurons, so the tensors (and the ONNX file, and its latency) really shrink.

Units are ranked by weight magnitude (L1 norm of everything that unit reads and
writes: ``score.structure``), and the lowest ``amount`` of each layer is removed.
Two model shapes are supported:

- a *chain* of ``Conv2d`` / ``Linear`` layers, in definition order, with element-wise
  layers, pooling, ``Flatten`` and BatchNorm between them (the Fashion-MNIST CNN, LeNet,
  VGG-style nets): a layer's output units are removed with the next layer's inputs;
- a BERT encoder (``transformers`` BertModel, e.g. MiniLM): attention heads (rows of
  Q/K/V, columns of the attention output) and FFN neurons (rows of the intermediate
  dense, columns of the output dense) of every layer; or whole layers (layer drop).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model_compression.layers import conv_like, n_params
from model_compression.score.structure import bert_of, head_scores, neuron_scores, unit_scores


@dataclass(frozen=True)
class ChannelPruneConfig:
    """Attributes:
    amount: fraction of each prunable layer's output units removed, in [0, 1).
    skip: substrings of module names whose outputs are kept (the classifier is always kept:
        the chain's last layer defines the model's output).
    round_to: the units kept per layer are rounded up to a multiple of this (default 1:
        exactly ``1 - amount``). CPU kernels work in SIMD widths of 8 floats: onnxruntime
        ran the Fashion-MNIST CNN thinned to 16/32/64 units 2.5x faster at batch 64 than
        thinned to 15/29/58 (BENCHMARKS.md), so 8 is the choice for speed.
    """

    amount: float = 0.5
    skip: tuple[str, ...] = ()
    round_to: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.amount < 1.0:
            raise ValueError(f"ChannelPruneConfig.amount must be in [0, 1), got {self.amount}")
        if self.round_to < 1:
            raise ValueError(f"ChannelPruneConfig.round_to must be a positive number of units, got {self.round_to}")


@dataclass(frozen=True)
class TransformerPruneConfig:
    """Attributes:
    heads: fraction of attention heads removed per layer, in [0, 1).
    neurons: fraction of FFN neurons removed per layer, in [0, 1).
    """

    heads: float = 0.25
    neurons: float = 0.25

    def __post_init__(self) -> None:
        for name in ("heads", "neurons"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"TransformerPruneConfig.{name} must be in [0, 1), got {getattr(self, name)}")


def _keep(scores: torch.Tensor, amount: float, round_to: int = 1) -> torch.Tensor:
    """Sorted indices of the ``(1 - amount)`` highest scores (at least one), their count
    rounded up to a multiple of ``round_to`` (at most all of them)."""
    n = max(1, scores.numel() - int(amount * scores.numel()))
    n = min(scores.numel(), -(-n // round_to) * round_to)
    return scores.topk(n).indices.sort().values


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _slice(layer: nn.Conv2d | nn.Linear, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Module:
    """A copy of Conv2d/Linear ``layer`` keeping output units ``out_idx`` and inputs ``in_idx``."""
    w = layer.weight.detach()
    b = None if layer.bias is None else layer.bias.detach()
    if out_idx is not None:
        w, b = w[out_idx], None if b is None else b[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    new: nn.Conv2d | nn.Linear
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ValueError("grouped/depthwise convolutions are not supported by channel pruning")
        new = conv_like(layer, w.shape[1], w.shape[0], bias=b is not None)
    else:
        new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    new.weight.data.copy_(w)
    if b is not None and new.bias is not None:
        new.bias.data.copy_(b)
    return new


@torch.no_grad()
def prune_channels(model: nn.Module, cfg: ChannelPruneConfig) -> tuple[nn.Module, dict[str, list[int]]]:
    """A pruned copy of a Conv2d/Linear chain, and the (out units before, after) per layer.

    Raises:
        ValueError: the chain has fewer than two layers, or a layer's input does not match
            the previous layer's output (the model is not a simple chain).
    """
    model = copy.deepcopy(model).eval()
    order = list(model.named_modules())
    chain = [(n, m) for n, m in order if isinstance(m, (nn.Conv2d, nn.Linear))]
    # the BatchNorm (if any) between each chain layer and the next normalises its outputs
    norm_after: dict[str, tuple[str, nn.Module]] = {}
    current = None
    for n, m in order:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            current = n
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and current and current not in norm_after:
            norm_after[current] = (n, m)
    if len(chain) < 2:
        raise ValueError("channel pruning needs a chain of at least two Conv2d/Linear layers")
    shapes: dict[str, list[int]] = {}
    prev_keep: torch.Tensor | None = None
    prev_units = 0
    for i, (name, layer) in enumerate(chain):
        in_idx = None
        if prev_keep is not None:
            fan_in = layer.weight.shape[1]
            if fan_in % prev_units:
                raise ValueError(f"{name} reads {fan_in} inputs, not a multiple of the previous {prev_units} units")
            per = fan_in // prev_units  # a Flatten after a conv: each channel feeds H*W inputs
            in_idx = (prev_keep[:, None] * per + torch.arange(per)[None, :]).flatten()
        last = i == len(chain) - 1
        out_idx = (
            None
            if last or any(s in name for s in cfg.skip)
            else _keep(unit_scores(layer.weight), cfg.amount, cfg.round_to)
        )
        units = layer.weight.shape[0]
        _set(model, name, _slice(layer, out_idx, in_idx))
        shapes[name] = [units, units if out_idx is None else int(out_idx.numel())]
        if out_idx is not None and name in norm_after:
            _slice_norm(model, *norm_after[name], out_idx)
        prev_keep = torch.arange(units) if out_idx is None else out_idx
        prev_units = units
    return model, shapes


def _slice_norm(root: nn.Module, name: str, norm: Any, idx: torch.Tensor) -> None:
    new = type(norm)(int(idx.numel()), eps=norm.eps, momentum=norm.momentum, affine=norm.affine)
    for attr in ("weight", "bias", "running_mean", "running_var"):
        src = getattr(norm, attr)
        if src is not None:
            getattr(new, attr).data.copy_(src.detach()[idx])
    _set(root, name, new.eval())


@torch.no_grad()
def prune_transformer(encoder: nn.Module, cfg: TransformerPruneConfig) -> tuple[nn.Module, dict[str, list[int]]]:
    """A copy of a BERT encoder (or a wrapper holding one as ``.encoder``) with the
    lowest-magnitude heads and FFN neurons of every layer removed; and per layer
    [heads, neurons] kept."""
    model = copy.deepcopy(encoder).eval()
    bert = bert_of(model)
    if bert is None:
        raise ValueError("prune_transformer needs a BERT-style model (encoder.layer[i].attention / intermediate)")
    kept: dict[str, list[int]] = {}
    for i, layer in enumerate(bert.encoder.layer):
        att = layer.attention.self
        size = att.attention_head_size
        heads = _keep(head_scores(layer, size), cfg.heads)
        cols = (heads[:, None] * size + torch.arange(size)[None, :]).flatten()
        for proj in ("query", "key", "value"):
            setattr(att, proj, _slice(getattr(att, proj), cols, None))
        layer.attention.output.dense = _slice(layer.attention.output.dense, None, cols)
        att.num_attention_heads = int(heads.numel())
        att.all_head_size = int(cols.numel())
        neurons = _keep(neuron_scores(layer), cfg.neurons)
        layer.intermediate.dense = _slice(layer.intermediate.dense, neurons, None)
        layer.output.dense = _slice(layer.output.dense, None, neurons)
        kept[f"layer.{i}"] = [int(heads.numel()), int(neurons.numel())]
    return model, kept


@dataclass(frozen=True)
class LayerDropConfig:
    """Attributes:
    keep: indices of the BERT layers kept, in order (e.g. ``(0, 2, 4)`` of 6): the student
        starts from the teacher's own layers (layer drop), not from scratch.
    """

    keep: tuple[int, ...] = (0, 2, 4)

    def __post_init__(self) -> None:
        if not self.keep or len(set(self.keep)) != len(self.keep) or min(self.keep) < 0:
            raise ValueError(f"LayerDropConfig.keep must be distinct non-negative layer indices, got {list(self.keep)}")


def drop_layers(encoder: nn.Module, cfg: LayerDropConfig) -> nn.Module:
    """A copy of a sentence encoder keeping only BERT layers ``cfg.keep``."""
    from model_compression.models.text_encoder import SentenceEncoder, layer_drop_student

    if not isinstance(encoder, SentenceEncoder):
        raise ValueError("layer drop needs a sentence encoder (a BERT model wrapped in SentenceEncoder)")
    return layer_drop_student(encoder, list(cfg.keep))


def channels_step(net: nn.Module, cfg: ChannelPruneConfig, ctx: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Recipe step ``prune_channels`` (``registry.STEPS``)."""
    net, shapes = prune_channels(net, cfg)
    return net, {"units": shapes, "parameters": n_params(net)}


def transformer_step(net: nn.Module, cfg: TransformerPruneConfig, ctx: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Recipe step ``prune_transformer`` (``registry.STEPS``)."""
    net, kept = prune_transformer(net, cfg)
    return net, {"kept_heads_neurons": kept, "parameters": n_params(net)}


def layer_drop_step(net: nn.Module, cfg: LayerDropConfig, ctx: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Recipe step ``layer_drop`` (``registry.STEPS``)."""
    net = drop_layers(net, cfg)
    return net, {"layers": list(cfg.keep), "parameters": n_params(net)}
