"""The stage runner: up-to-date checks, atomic outputs and the sidecar record.

A stage's key is the sha256 of (stage name, stage version, its params, its input hashes,
library version). If ``record.json`` in the output folder carries the same key and every
output still hashes as recorded, the stage is skipped. Otherwise it runs into a temporary
folder that replaces the old one only when complete, so an interrupted run never leaves
a half-written output behind.
"""

from __future__ import annotations

import errno
import json
import logging
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import model_compression
from model_compression.hashing import sha256_file, sha256_json, sha256_tree
from tasks.project import Project, configure_runtime

log = logging.getLogger("pipeline")

RECORD = "record.json"
_LIBS = ("torch", "onnx", "onnxruntime", "transformers", "numpy", "prefect", "dvc", "great_expectations", "boto3")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "model_compression": model_compression.__version__}
    for name in _LIBS:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _output_hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != RECORD
    }


def _current(folder: Path, key: str) -> dict[str, Any] | None:
    """The record in ``folder`` if it was made under ``key`` and every output still hashes as recorded."""
    rec = read_record(folder)
    if rec is None or rec.get("key") != key or _output_hashes(folder) != rec.get("outputs"):
        return None
    return rec


def read_record(folder: Path) -> dict[str, Any] | None:
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        rec: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return rec


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


Body = Callable[[Project, str, Path], dict[str, Any]]


class DiskFullError(OSError):
    """The output folder's file system ran out of space."""


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes:
        name: stage name; also the output folder ``data/<model>/<name>``.
        version: bump when the stage's behaviour changes; part of the key and the record.
        inputs: ``(project, model) -> {name: path}`` of the files/folders it reads.
        params: ``(project, model) -> dict`` of the params it depends on.
        body: ``(project, model, out_dir) -> summary``; writes its outputs into ``out_dir``.
    """

    name: str
    version: int
    inputs: Callable[[Project, str], dict[str, Path]]
    params: Callable[[Project, str], dict[str, Any]]
    body: Body

    def key(self, project: Project, model: str) -> tuple[str, dict[str, str]]:
        hashes = {}
        for label, path in self.inputs(project, model).items():
            if not path.exists():
                raise FileNotFoundError(
                    f"stage {self.name} of {model}: input {label} missing at {path}; run the upstream stage first"
                )
            hashes[label] = sha256_tree(path)
        material = {
            "stage": self.name,
            "version": self.version,
            "params": self.params(project, model),
            "inputs": hashes,
            "library": model_compression.__version__,
        }
        return sha256_json(material), hashes

    def up_to_date(self, project: Project, model: str) -> dict[str, Any] | None:
        """The record of a current, intact output, or None."""
        out = project.stage_dir(model, self.name)
        if read_record(out) is None:
            return None  # nothing to compare: skip hashing the inputs
        return _current(out, self.key(project, model)[0])

    def run(self, model: str, root: str | Path = ".") -> dict[str, Any]:
        """Run the stage for ``model`` in project ``root`` (skipped when up to date)."""
        project = Project.at(root)
        project.entry(model)
        out = project.stage_dir(model, self.name)
        key, hashes = self.key(project, model)  # inputs are hashed once per run
        current = _current(out, key)
        if current is not None:
            log.info("%s/%s is up to date (key %s)", model, self.name, key[:12])
            return current
        configure_runtime(project)
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        t0 = time.perf_counter()
        log.info("%s/%s: running", model, self.name)
        try:
            summary = self.body(project, model, tmp)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno == errno.ENOSPC:
                raise DiskFullError(
                    errno.ENOSPC,
                    f"disk full while writing {out}: no space left on device; the previous output is untouched",
                ) from e
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-written output behind
            raise
        record = {
            "stage": self.name,
            "version": self.version,
            "model": model,
            "key": key,
            "params": self.params(project, model),
            "inputs": hashes,
            "outputs": _output_hashes(tmp),
            "versions": library_versions(),
            "seed": project.seed,
            "threads": project.threads,
            "summary": summary,
        }
        write_json(tmp / RECORD, record)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        log.info("%s/%s: done in %.1f s", model, self.name, time.perf_counter() - t0)
        return record
