"""``dvc.yaml``, written from the stage declarations: ``python -m tasks dvc-yaml``.

One DVC stage per (stage, model), named ``<stage>.<model>`` (DVC keeps ``@`` for its own
``foreach``, whose template cannot give each model its own dependencies). Each lists:

- ``deps``: the stage's input paths inside the project, and the source file of every
  module in its code set (``codehash``): exactly what the Prefect path hashes;
- ``params``: where in params.yaml each section it reads lives (the entry's own, or the
  default it falls back to; a default that lives in code is covered by the code deps);
- ``outs``: its output folder and its sidecar record, ``persist: true``. DVC runs the
  stage's command whenever a dependency file changes; the command itself (``Stage.run``)
  then decides, by the same key as every other entry point, whether there is anything to
  compute: a comment edited in a module re-runs nothing but the key check. Deleting an
  output folder is how to force a rebuild (DVC's ``repro -f`` only re-checks).

``make repro``, the nightly flow and ``flows.cli add`` write it; a test fails when the
committed file is not what the declarations give.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from model_compression.config import load
from tasks.core import codehash
from tasks.core.pipeline import ORDER, stage
from tasks.core.project import Project
from tasks.core.stage import Stage, record_path

HEADER = """\
# Written by `python -m tasks dvc-yaml` from the stage declarations in tasks/stages/: do not
# edit by hand. One stage per (stage, model): `dvc repro report.minilm` rebuilds one model.
"""


def dvc_name(stage_name: str, model: str) -> str:
    return f"{stage_name}.{model}"


def _relative(project: Project, path: Path) -> str | None:
    resolved = path.resolve()
    if resolved.is_relative_to(Path(sys.prefix).resolve()):
        return None  # a wheel's data in the environment (a fresh clone keeps .venv inside the project)
    try:
        return resolved.relative_to(project.root).as_posix()
    except ValueError:
        return None  # outside the project (a system dataset): hashed in the key only


def entry(st: Stage, project: Project, model: str) -> dict[str, Any]:
    """The DVC stage of ``st`` for ``model``."""
    inputs = [_relative(project, p) for p in [*st.inputs(project, model).values(), *st.watches(project, model)]]
    deps = sorted({p for p in inputs if p}) + codehash.files(st.code_set(project, model))
    params = sorted({path for path, _ in st.resolved_params(project, model).values() if path})
    folder = project.stage_dir(model, st.name)
    rel = _relative(project, folder)
    out: dict[str, Any] = {"cmd": f"python -m tasks {st.name} {model}", "deps": deps}
    if params:
        out["params"] = params
    record = _relative(project, record_path(folder))

    def keep(**more: Any) -> dict[str, Any]:
        return {"persist": True, **more}  # the stage's own key check decides what to rebuild

    if st.outs is None:
        out["outs"] = [{rel: keep()}, {record: keep()}]
        return out
    out["outs"] = [{f"{rel}/{o}": keep()} for o in st.outs.get("outs", [])] + [{record: keep()}]
    if st.outs.get("metrics"):
        out["metrics"] = [{f"{rel}/{m}": keep(cache=False)} for m in st.outs["metrics"]]
    if st.outs.get("plots"):
        out["plots"] = [{f"{rel}/{p}": keep(**{"cache": False, **spec})} for p, spec in st.outs["plots"].items()]
    return out


def kernels_entry(project: Project) -> dict[str, Any]:
    """The stage that measures this machine's kernel profile when its file lacks this
    machine's preset (``always_changed``: the preset is the CPU's, which DVC cannot see; the
    command is a no-op otherwise, and an unchanged file re-runs nothing downstream)."""
    kernels_path = load("tasks.pools:kernels_path")  # by name, as the stages are: pools sit above the runner
    code = codehash.files(codehash.closure(["tasks.pools", "model_compression.quantize.kernels"]))
    return {
        "cmd": "python -m tasks kernels",
        "deps": code,
        "params": ["kernels"],
        "outs": [{_relative(project, kernels_path(project)): {"cache": False, "persist": True}}],
        "always_changed": True,
    }


def document(project: Project) -> dict[str, Any]:
    if project.root != codehash.ROOT:
        raise ValueError(
            f"dvc.yaml lists code files: the project at {project.root} must hold the code it runs "
            f"(this code is at {codehash.ROOT})"
        )
    stages = {"kernels": kernels_entry(project)}
    for model in project.catalogue():
        project.check(model)
        for name in ORDER:
            stages[dvc_name(name, model)] = entry(stage(name), project, model)
    return {"stages": stages}


def render(project: Project) -> str:
    return HEADER + yaml.safe_dump(document(project), sort_keys=False, width=120)


def write(project: Project) -> bool:
    """Write ``dvc.yaml``; returns whether it changed."""
    path = project.root / "dvc.yaml"
    text = render(project)
    if path.is_file() and path.read_text() == text:
        return False
    tmp = path.with_name(f"dvc.yaml.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)  # an overlapping run reads the old file or the new one, never half
    return True
