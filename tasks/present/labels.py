"""Short labels that say what each artifact is: a recipe's steps, or a technique and its key settings.

``artifact_label(project, model, "prune")`` -> ``"prune 80 % global"``; a recipe's label
lists its steps with the settings that matter most to a reader (``"prune_channels 55 % ->
finetune 2 ep -> ..."``), read from params.yaml (``recipes:``) and the entry's sections.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tasks.core.project import Project


def _pct(v: Any) -> str:
    return f"{float(v):.0%}".replace("%", " %")


def _join(v: Any) -> str:
    return "/".join(str(x) for x in v) if isinstance(v, list | tuple) else str(v)


# The settings a step's label shows, in this order, when the recipe sets them; others
# (skip lists, block sizes, thresholds) are in params.yaml and would only lengthen the label.
STEP_KEYS: dict[str, Callable[[Any], str]] = {
    "amount": _pct,
    "sparsity": _pct,
    "heads": lambda v: f"heads {_pct(v)}",
    "neurons": lambda v: f"neurons {_pct(v)}",
    "keep": lambda v: f"layers {_join(v)}",
    "scope": str,
    "energy": lambda v: f"{_pct(v)} energy",
    "bits": lambda v: f"{v} bits",
    "mean_bits": lambda v: f"{v:g} bits mean",
    "decode": lambda v: "decoded at load" if v == "table" else "decoded per call",
    "op_types": _join,
    "ops": _join,
    "steps": lambda v: f"{v} steps",
}


def step_label(step: dict[str, Any]) -> str:
    """``{"step": "prune", "sparsity": 0.8, "scope": "global"}`` -> ``"prune 80 % global"``;
    a fine-tuning step's epochs from its ``train`` mapping (``"finetune 2 ep"``)."""
    parts = [str(step["step"])]
    parts += [fmt(step[k]) for k, fmt in STEP_KEYS.items() if k in step]
    epochs = (step.get("train") or {}).get("epochs") if isinstance(step.get("train"), dict) else None
    if epochs is not None:
        parts.append(f"{epochs} ep")
    return " ".join(parts)


def recipe_label(project: Project, model: str, name: str) -> str:
    """The steps of recipe ``name``, joined by arrows; ``student:`` first when it starts from
    the distilled student rather than fp32."""
    spec = project.recipe_spec(model, name)
    steps = " → ".join(step_label(s) for s in spec["steps"])
    return f"student: {steps}" if spec.get("from", "baseline") == "distill" else steps


def _distill(section: dict[str, Any]) -> str:
    student = section.get("student")
    if isinstance(student, dict):
        return "student " + ", ".join(f"{k} {_join(v)}" for k, v in student.items())
    if "layers" in section:
        return f"student of teacher layers {_join(section['layers'])}"
    return "student"


def _search(project: Project, model: str) -> str:
    found = project.stage_dir(model, "search") / "search.json"
    best = (json.loads(found.read_text()).get("best") or {}) if found.is_file() else {}
    return f"search: best trial {best['recipe']}" if best.get("recipe") else "search"


def technique_label(project: Project, model: str, name: str) -> str:
    """A single technique's artifact: its technique and key settings (params.yaml)."""
    section = project.section(model, name) or {}
    if name == "baseline":
        return "fp32 reference"
    if name == "prune":
        return f"prune {_pct(section.get('sparsity', 0))} {section.get('scope', '')}".rstrip()
    if name == "quantize":
        channel = ", per-channel" if section.get("per_channel") else ""
        return f"int8 {section.get('mode', '')}{channel}".replace("  ", " ")
    if name == "factorize":
        return f"SVD {_pct(section.get('energy', 1))} energy"
    if name == "distill":
        return _distill(section)
    if name == "search":
        return _search(project, model)
    return name


def absent(project: Project, model: str, present: set[str]) -> dict[str, str]:
    """``{artifact: why it is not there}`` of every artifact of ``model`` not in ``present``:
    ``skipped: <reason>`` (its stage's record), or, for a search whose trials all failed,
    ``no trial passed`` with the nearest miss (search.json)."""
    skipped = project.skipped(model)
    out = {}
    for name in project.artifact_names(model):
        if name in skipped:
            out[name] = f"skipped: {skipped[name]}"
        elif name not in present:
            out[name] = _missing(project, model, name)
    # a stage skipped as a whole (``recipe`` of an entry without recipes) names no artifact
    return out | {s: f"skipped: {why}" for s, why in skipped.items() if s not in out}


def _missing(project: Project, model: str, name: str) -> str:
    found = project.stage_dir(model, name) / "search.json"
    if name != "search" or not found.is_file():
        return "no artifact: its stage wrote none"
    summary = json.loads(found.read_text())
    miss = summary.get("nearest_miss") or {}
    near = f"; nearest miss: trial {miss['trial']} ({miss['recipe']}): {'; '.join(miss['missed'])}" if miss else ""
    return f"no trial passed ({summary.get('completed')} of {summary.get('planned')} run){near}"


def artifact_label(project: Project, model: str, name: str) -> str:
    """What artifact ``name`` of ``model`` is, in a few words (see the module docstring)."""
    if name in project.recipe_names(model):
        return recipe_label(project, model, name)
    return technique_label(project, model, name)
