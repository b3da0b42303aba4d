"""Add an entry to params.yaml by editing its text: the comments there are documentation.

Every byte of the file stays as it was except the ``catalogue:`` list, which gains the
name, and the ``models:`` section, which gains the entry at its end. The edited text is
parsed back and compared with the original (everything else equal, the entry exactly
as meant) before it replaces the file, atomically, and only if the file did not change
meanwhile. A file whose ``catalogue:`` or ``models:`` cannot be edited this way is an
error that says how to write it.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tasks.core.project import NAME, Project

TOP_KEY = re.compile(r"[^\s#]")  # a line that starts a top-level key (or a document marker)
FLOW_CATALOGUE = re.compile(r"^catalogue:[ \t]*\[(?P<items>[^\]\n]*)\]", re.M)
BLOCK_CATALOGUE = re.compile(r"^catalogue:[ \t]*(#.*)?$", re.M)
MODELS = re.compile(r"^models:[ \t]*(?P<empty>\{\})?[ \t]*(#.*)?$", re.M)  # entries below, or none yet: {}
WIDTH = 120  # an entry's section longer than this is written one field per line


def check_name(project: Project, name: str) -> None:
    """``name`` can name a new model: a valid folder/stage name, not yet in models or catalogue."""
    if not NAME.fullmatch(name):
        raise ValueError(f"model name {name!r} must be lower-case letters, digits and dashes (at most 63)")
    taken = set(project.params["models"] or {}) | set(project.params.get("catalogue") or [])
    if name in taken:
        raise ValueError(f"{name!r} is already in params.yaml (models or catalogue): pick another name")


def flow(value: Any) -> str:
    """``value`` as one line of YAML flow style (``{uri: ..., sha256: ...}``)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 20).strip()
    return text.removesuffix("...").strip()  # a plain scalar ends its document with "..."


def _lines(name: str, entry: dict[str, Any], indent: str, comments: dict[str, str]) -> list[str]:
    """The entry as text: one line per section, in flow style, at the models' indentation."""
    out = [f"{indent}{name}:"]
    for key, value in entry.items():
        note = f"  # {comments[key]}" if key in comments else ""
        line = f"{indent * 2}{key}: {flow(value)}{note}"
        if len(line) <= WIDTH or not isinstance(value, dict):
            out.append(line)
            continue
        out.append(f"{indent * 2}{key}:{note}")  # too long for one line: one line per field
        out.extend(f"{indent * 3}{k}: {flow(v)}" for k, v in value.items())
    return out


def _with_catalogue(text: str, name: str, catalogue: list[str] | None) -> str:
    """``text`` with ``name`` last in ``catalogue:``. Without a catalogue (or an empty one:
    every model runs) there is nothing to edit."""
    if not catalogue:
        return text
    found = FLOW_CATALOGUE.search(text)
    if found:
        items = found["items"].rstrip()
        return text[: found.start("items")] + f"{items}, {name}" + text[found.end("items") :]
    found = BLOCK_CATALOGUE.search(text)
    if found:
        lines = text[found.end() :].split("\n")[1:]  # the lines after "catalogue:"
        items = 0
        while items < len(lines) and re.match(r"[ \t]*- ", lines[items]):
            items += 1
        if items:
            indent = re.match(r"[ \t]*", lines[0])[0]  # type: ignore[index]  # the pattern always matches
            at = found.end() + 1 + sum(len(line) + 1 for line in lines[:items])
            return text[:at] + f"{indent}- {name}\n" + text[at:]
    raise ValueError(
        "cannot add to params.yaml's catalogue: write it as one line (catalogue: [a, b]) or as a list of '- a' lines"
    )


def _with_model(text: str, name: str, entry: dict[str, Any], comments: dict[str, str]) -> str:
    """``text`` with the entry appended to the ``models:`` block (before any comment that
    introduces the next top-level key)."""
    found = MODELS.search(text)
    if not found:
        raise ValueError("cannot add to params.yaml's models: expected a 'models:' line followed by its entries")
    if found["empty"]:  # the first entry: "models: {}" becomes "models:"
        text = text[: found.start("empty")].rstrip(" \t") + text[found.end("empty") :]
        found = MODELS.search(text)
        assert found is not None
    head, body = text[: found.end()], text[found.end() :].split("\n")
    first = next((line for line in body[1:] if line.strip() and not line.lstrip().startswith("#")), "")
    indent = re.match(r"[ \t]*", first)[0] or "  "  # type: ignore[index]  # the pattern always matches
    end = next((i for i in range(1, len(body)) if TOP_KEY.match(body[i])), len(body))
    while end > 1 and (not body[end - 1].strip() or body[end - 1].startswith("#")):
        end -= 1  # blank lines and column-0 comments before the next key belong to it
    body[end:end] = ["", *_lines(name, entry, indent, comments)]
    return head + "\n".join(body)


def with_entry(text: str, name: str, entry: dict[str, Any], comments: dict[str, str] | None = None) -> str:
    """params.yaml ``text`` with model ``name`` added to ``models:`` and ``catalogue:``;
    ``comments``: ``{section: note}`` written after a section's line. Raises ValueError when
    the result would differ from the original in anything else."""
    before = yaml.safe_load(text)
    if not isinstance(before, dict) or not isinstance(before.get("models", 0), dict | None):
        raise ValueError("params.yaml must be a mapping with a 'models' section of entries")
    catalogue = before.get("catalogue")
    new = _with_model(_with_catalogue(text, name, catalogue), name, entry, comments or {})
    try:
        after = yaml.safe_load(new)
    except yaml.YAMLError as e:
        raise ValueError(f"editing params.yaml to add {name!r} would break it ({e}); add it by hand") from None
    expected = {**before, "models": {**(before["models"] or {}), name: entry}}
    if catalogue:
        expected["catalogue"] = [*catalogue, name]
    if after != expected:
        raise ValueError(f"editing params.yaml to add {name!r} would change more than the entry; add it by hand")
    return new


def read(root: Path) -> str:
    """``root``/params.yaml as text, line endings as they are."""
    with open(root / "params.yaml", newline="") as f:
        return f.read()


def candidate(root: Path, params: dict[str, Any]) -> Project:
    """The project at ``root`` as it would be with ``params``, without writing them."""
    project = Project(root.resolve())
    project.__dict__["params"] = params  # Project.params is a cached_property
    return project


def replace(root: Path, original: str, text: str) -> None:
    """Write ``text`` to ``root``/params.yaml atomically if the file still holds ``original``."""
    path = root / "params.yaml"
    if read(root) != original:
        raise ValueError(f"{path} changed while the entry was being prepared: nothing written, run again")
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".params.yaml.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
