"""The project on disk: ``params.yaml`` (the single source of configuration) and ``data/``.

Layout, per catalogue model ``M``::

    data/M/fetch/       fetched from the model zoo (weights, or the dataset to train on)
    data/M/baseline/    the fp32 reference: torch weights + model.onnx
    data/M/<stage>/     one folder per stage: its outputs plus record.json (the sidecar)
    data/M/recipe/<R>/  one folder per recipe the entry names: the artifact called ``R``
    data/M/report/metrics.json   the figures `dvc metrics show` displays

A catalogue entry names its ``kind`` and ``source``; every section it leaves out takes the
value under ``defaults:`` in params.yaml (``section``), and ``param_path`` says where that
value lives, so DVC tracks exactly what a stage reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tasks.kinds import adapter

if TYPE_CHECKING:
    from tasks.kinds.base import Kind

RECIPE_FIELDS = {"steps", "from", "tolerance"}  # a recipe in its mapping form
ARTIFACT_STAGES = ("baseline", "prune", "quantize", "factorize", "distill", "recipe", "search")
REQUIRED = ("kind", "source", "tolerance")
SECTIONS = ("seed", "arch", "train", "eval", "score", "prune", "quantize", "factorize", "teach", "distill", "recipe",
            "search", "bench")  # fmt: skip
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # model names are folder names and DVC stage names


@dataclass(frozen=True)
class Project:
    """A project root holding ``params.yaml`` and ``data/``."""

    root: Path

    @classmethod
    def at(cls, root: str | Path = ".") -> Project:
        root = Path(root).resolve()
        if not (root / "params.yaml").is_file():
            raise FileNotFoundError(f"no params.yaml in {root}")
        return cls(root)

    @cached_property
    def params(self) -> dict[str, Any]:
        data = yaml.safe_load((self.root / "params.yaml").read_text())
        if not isinstance(data, dict) or "models" not in data:
            raise ValueError(f"{self.root / 'params.yaml'}: expected a mapping with a 'models' section")
        return data

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def seed(self) -> int:
        return int(self.params.get("seed", 0))

    @property
    def threads(self) -> int:
        threads = int(self.params.get("threads", 1))
        if threads < 1:
            raise ValueError(f"params.yaml threads must be >= 1, got {threads}")
        return threads

    @property
    def defaults(self) -> dict[str, Any]:
        section = self.params.get("defaults") or {}
        if not isinstance(section, dict):
            raise ValueError(f"params.yaml defaults must be a mapping of section -> value, got {section!r}")
        unknown = sorted(set(section) - set(SECTIONS))
        if unknown:
            raise ValueError(f"params.yaml defaults: unknown section(s) {unknown}; known: {list(SECTIONS)}")
        return section

    def catalogue(self) -> list[str]:
        return list(self.params.get("catalogue") or self.params["models"])

    def entry(self, model: str) -> dict[str, Any]:
        """The catalogue entry of ``model`` as written, checked for names and required keys."""
        models = self.params["models"]
        if model not in models:
            raise ValueError(f"unknown model {model!r}; catalogue: {sorted(models)}")
        if not NAME.fullmatch(model):
            raise ValueError(f"model name {model!r} must be lower-case letters, digits and dashes")
        entry = models[model]
        if not isinstance(entry, dict):
            raise ValueError(f"models.{model} must be a mapping, got {type(entry).__name__}")
        unknown = sorted(set(entry) - set(REQUIRED) - set(SECTIONS))
        if unknown:
            raise ValueError(f"models.{model}: unknown key(s) {unknown}; known: {[*REQUIRED, *SECTIONS]}")
        missing = [k for k in REQUIRED if k not in entry]
        if missing:
            raise ValueError(f"models.{model} lacks {missing}: every entry names its kind, source and tolerance")
        adapter(str(entry["kind"]))  # fail early on an unknown kind
        return dict(entry)

    def kind(self, model: str) -> Kind:
        """The adapter of ``model``'s kind (``tasks/kinds``)."""
        return adapter(str(self.entry(model)["kind"]))

    def kind_name(self, model: str) -> str:
        return str(self.entry(model)["kind"])

    def section(self, model: str, name: str) -> Any:
        """The effective section ``name`` of ``model``: the entry's own (null: not
        requested), else ``defaults.<name>``, else the kind's default eval settings."""
        entry = self.entry(model)
        if name in entry:
            return entry[name]
        if name in self.defaults:
            return self.defaults[name]
        if name == "eval":
            default = self.kind(model).default_eval
            if default is None:
                raise ValueError(f"models.{model}.eval is required for kind {entry['kind']!r}")
            return dict(default)
        return None

    def param_path(self, model: str, name: str) -> str | None:
        """Where in params.yaml section ``name`` of ``model`` comes from (None: from code)."""
        if name in self.entry(model):
            return f"models.{model}.{name}"
        return f"defaults.{name}" if name in self.defaults else None

    def resolved(self, model: str) -> dict[str, Any]:
        """The entry with every section filled in: what the model's artifacts were made with."""
        out = self.entry(model)
        for name in SECTIONS:
            out[name] = self.section(model, name)
        return out

    def stage_dir(self, model: str, stage: str) -> Path:
        return self.data / model / stage

    def recipe_names(self, model: str) -> list[str]:
        """The recipes ``models.<model>.recipe`` names (one name or a list; null: none). Each
        recipe's artifact is called by its name."""
        names = self.section(model, "recipe")
        names = [] if names is None else [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) < len(names):
            raise ValueError(f"models.{model}.recipe must be a recipe name or a list of distinct names, got {names!r}")
        clash = sorted(set(names) & set(ARTIFACT_STAGES))
        if clash:
            raise ValueError(f"recipe name(s) {clash} clash with artifact stages {list(ARTIFACT_STAGES)}: rename them")
        return names

    def recipe_spec(self, model: str, name: str) -> dict[str, Any]:
        """Recipe ``name`` of params.yaml (``recipes.<name>``) in its mapping form: ``steps``,
        and optionally ``from`` and ``tolerance``; a bare list is its ``steps``."""
        recipes = self.params.get("recipes") or {}
        if name not in recipes:
            raise ValueError(f"models.{model}.recipe names {name!r}, which is not in recipes: {sorted(recipes)}")
        raw = recipes[name]
        raw = {"steps": raw} if isinstance(raw, list) else raw
        if not isinstance(raw, dict) or not set(raw) <= RECIPE_FIELDS or "steps" not in raw:
            raise ValueError(
                f"recipes.{name} must be a list of steps or a mapping with {sorted(RECIPE_FIELDS)}, got {raw!r}"
            )
        return raw

    def artifact_names(self, model: str) -> list[str]:
        """Every artifact ``model`` can have, in stage order: the artifact stages, with
        ``recipe`` standing for the entry's recipes."""
        out: list[str] = []
        for s in ARTIFACT_STAGES:
            out.extend(self.recipe_names(model) if s == "recipe" else [s])
        return out

    def artifact(self, model: str, name: str) -> Path:
        """The ONNX file of artifact ``name``: a stage's, or a recipe's under ``recipe/``."""
        if name not in ARTIFACT_STAGES and name in self.recipe_names(model):
            return self.stage_dir(model, "recipe") / name / "model.onnx"
        return self.stage_dir(model, name) / "model.onnx"

    def artifacts(self, model: str) -> dict[str, Path]:
        """``{name: model.onnx}`` of the artifacts that were produced, in stage order (a
        technique skipped for this model leaves only its record, with the reason)."""
        return {n: self.artifact(model, n) for n in self.artifact_names(model) if self.artifact(model, n).is_file()}

    def skipped(self, model: str) -> dict[str, str]:
        """``{stage: reason}`` of the artifact stages skipped for ``model``."""
        out = {}
        for s in ARTIFACT_STAGES:
            rec = self.stage_dir(model, s).with_name(f"{s}.record.json")  # the stage's sidecar record
            if rec.is_file():
                summary = json.loads(rec.read_text()).get("summary", {})
                if summary.get("skipped"):
                    out[s] = str(summary["skipped"])
                out.update(summary.get("recipes_skipped") or {})  # a recipe whose start was skipped
        return out

    def read_output(self, model: str, stage: str, name: str) -> Any:
        """A JSON output of a stage, e.g. ``read_output("minilm", "benchmark", "bench.json")``."""
        return json.loads((self.stage_dir(model, stage) / name).read_text())

    def check(self, model: str) -> None:
        """Everything about ``model``'s entry that can be checked before any work starts."""
        self.entry(model)
        self.kind(model).check(self, model)
