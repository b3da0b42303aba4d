"""The project on disk: ``params.yaml`` (the single source of configuration) and ``data/``.

Layout, per catalogue model ``M``::

    data/M/source/      fetched from the model zoo (weights, or the dataset to train on)
    data/M/baseline/    the fp32 reference: torch weights + model.onnx
    data/M/<stage>/     one folder per stage: its outputs plus record.json (the sidecar)
    data/M/report/metrics.json   the figures `dvc metrics show` displays
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from model_compression.registry import kind_module, technique_config

ARTIFACT_STAGES = ("baseline", "prune", "quantize", "factorize", "distill", "recipe", "search")
# Keys dvc.yaml declares as params of some stage: DVC fails on a missing one, so every
# entry lists them all, null where one does not apply.
ENTRY_KEYS = ("kind", "source", "seed", "arch", "train", "eval", "tolerance", "score", "prune", "quantize",
              "factorize", "distill", "recipe", "search", "bench")  # fmt: skip


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

    def catalogue(self) -> list[str]:
        return list(self.params.get("catalogue") or self.params["models"])

    def entry(self, model: str) -> dict[str, Any]:
        models = self.params["models"]
        if model not in models:
            raise ValueError(f"unknown model {model!r}; catalogue: {sorted(models)}")
        entry = models[model]
        if not isinstance(entry, dict):
            raise ValueError(f"models.{model} must be a mapping, got {type(entry).__name__}")
        missing = [k for k in ENTRY_KEYS if k not in entry]
        if missing:
            raise ValueError(
                f"models.{model} lacks key(s) {missing}: every catalogue entry lists {list(ENTRY_KEYS)} "
                "(null where one does not apply), because dvc.yaml declares them as stage params"
            )
        kind_module(entry.get("kind", ""))  # fail early on an unknown kind
        return entry

    def kind(self, model: str) -> str:
        return str(self.entry(model)["kind"])

    def config(self, model: str, technique: str) -> Any:
        """The validated config of ``technique`` for ``model``, seeded from params."""
        values = dict(self.entry(model).get(technique) or {})
        return technique_config(technique, self.kind(model), values)

    def stage_dir(self, model: str, stage: str) -> Path:
        return self.data / model / stage

    def artifact(self, model: str, stage: str) -> Path:
        return self.stage_dir(model, stage) / "model.onnx"

    def artifacts(self, model: str) -> dict[str, Path]:
        """``{stage: model.onnx}`` of the artifact stages that produced one, in stage order
        (a technique skipped for this model leaves only its record, with the reason)."""
        return {s: self.artifact(model, s) for s in ARTIFACT_STAGES if self.artifact(model, s).is_file()}

    def skipped(self, model: str) -> dict[str, str]:
        """``{stage: reason}`` of the artifact stages skipped for ``model``."""
        out = {}
        for s in ARTIFACT_STAGES:
            rec = self.stage_dir(model, s) / "record.json"
            if rec.is_file():
                reason = json.loads(rec.read_text()).get("summary", {}).get("skipped")
                if reason:
                    out[s] = str(reason)
        return out

    def read_output(self, model: str, stage: str, name: str) -> Any:
        """A JSON output of a stage, e.g. ``read_output("minilm", "benchmark", "bench.json")``."""
        return json.loads((self.stage_dir(model, stage) / name).read_text())


def configure_runtime(project: Project) -> None:
    """Pin threads and seeds from params: the compute is deterministic for a given machine."""
    import torch

    torch.manual_seed(project.seed)
    torch.set_num_threads(project.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
