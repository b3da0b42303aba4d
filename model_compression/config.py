"""Frozen configs from plain YAML values, and ``"module:attr"`` references imported on use."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")


def load(ref: str) -> Any:
    """The object a ``"package.module:attr"`` reference names (the module is imported now)."""
    module, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load {ref!r}: {e}") from e


def from_dict(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Construct dataclass ``cls`` from plain YAML values: lists become tuples, nested
    dataclasses are built recursively, and an unknown key is an error naming the field."""
    if not isinstance(values, dict):
        raise ValueError(f"{where or cls.__name__}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where or cls.__name__}: unknown field(s) {unknown}; allowed: {sorted(fields)}")
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            kwargs[name] = from_dict(hint, value, f"{where}.{name}")  # type: ignore[arg-type]
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{where or cls.__name__}: {e}") from e
