"""Sentence encoders (BERT-style, e.g. all-MiniLM-L6-v2) from a Hugging Face folder.

The sentence embedding is the attention-mask-weighted mean of ``last_hidden_state``,
L2-normalised, as sentence-transformers computes it. Loading never touches a hub:
``HF_HUB_OFFLINE=1`` is set and the folder must hold the weights as safetensors.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Unit sentence vectors (B, D): the mask-weighted mean of ``hidden`` (B, T, D), L2-normalised."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, dim=-1)


class SentenceEncoder(nn.Module):
    """Wraps a transformers encoder so ``forward(input_ids, attention_mask)`` -> (B, D) unit vectors."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)


def load_encoder(folder: str | Path) -> tuple[SentenceEncoder, Any]:
    """Load (encoder, tokenizer) from a sentence-transformers / transformers folder.

    Eager attention is requested because the ONNX exporter traces it faithfully and
    onnxruntime's transformer optimizer recognises it.
    """
    from transformers import AutoModel, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"no model.safetensors in {folder}: refusing pickle checkpoints")
    try:
        tok = AutoTokenizer.from_pretrained(folder)
        enc = AutoModel.from_pretrained(folder, attn_implementation="eager", use_safetensors=True)
    except Exception as e:  # transformers raises many types for a bad folder
        raise ValueError(f"cannot load encoder from {folder}: {e}") from e
    model = SentenceEncoder(enc).eval()
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise ValueError(f"weight {name!r} of {folder} contains NaN or Inf values")
    return model, tok


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Pad to the longest text in the batch, truncate at ``max_length`` tokens; int64 tensors."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def layer_drop_student(teacher: SentenceEncoder, keep: list[int]) -> SentenceEncoder:
    """A shallower encoder initialised from the teacher: embeddings plus layers ``keep``.

    Args:
        teacher: the fp32 encoder (not modified).
        keep: indices of the teacher's transformer layers to copy, in order.
    """
    inner_teacher: Any = teacher.encoder  # a transformers BertModel; .encoder.layer is a ModuleList
    layers = inner_teacher.encoder.layer
    if not keep or any(not 0 <= i < len(layers) for i in keep):
        raise ValueError(f"distill layers {keep} must be indices in [0, {len(layers)})")
    student = copy.deepcopy(teacher)
    inner: Any = student.encoder
    inner.encoder.layer = nn.ModuleList(copy.deepcopy(layers[i]) for i in keep)
    inner.config.num_hidden_layers = len(keep)
    return student
