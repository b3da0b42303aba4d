"""Model kinds: one adapter module per kind, registered here.

A catalogue entry's ``kind`` picks its adapter (``base.Kind``). Adding a kind is one new
module with a ``Kind`` subclass and one line below; no stage changes. Entries are
``"module:Class"`` strings, imported on use, so a stage depends on its own model's kind
only.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from model_compression.config import load

if TYPE_CHECKING:
    from tasks.kinds.base import Kind

KINDS: dict[str, str] = {
    "text-encoder": "tasks.kinds.text_encoder:TextEncoder",
    "image-classifier": "tasks.kinds.image_classifier:ImageClassifier",
    "custom": "tasks.kinds.custom:Custom",  # a team's own model: ONNX, safetensors + factory, TorchScript, .pt2
}


@cache
def adapter(kind: str) -> Kind:
    """The adapter of ``kind``; an unknown kind is an error naming the known ones."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {sorted(KINDS)}")
    instance: Kind = load(KINDS[kind])()
    return instance
