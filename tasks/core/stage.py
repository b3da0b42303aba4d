"""A stage's one declaration, its key, and the runner: up-to-date checks, atomic outputs,
the sidecar record.

A stage declares once what it depends on (kedro's node, in the spirit): its input paths,
the params.yaml entries it reads, the kind capabilities it calls, and any modules its
params name. Three readers use that declaration: ``Stage.run`` (the Prefect tasks and
``python -m tasks``), ``flows.cli plan``, and ``dvcyaml``, which writes ``dvc.yaml``.

The key is the sha256 of: stage name and format version, the resolved params, the
sha256 of every input path, and the hash of every module in the stage's code set
(``codehash``). If ``data/<model>/<stage>.record.json`` carries the same key and the
output folder still hashes as recorded, the stage is skipped. Otherwise it runs into
``<stage>.partial-<pid>-<random>/``, its own folder even when another run builds the same
stage, which replaces the output folder only when complete; the record is written after,
beside the folder, so an interrupted run never leaves a half-written output that looks
done. A partial folder whose pid is gone (a killed run) is removed by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from model_compression.hashing import sha256_file, sha256_json, sha256_tree
from model_compression.runtime.cpu import cpu, simd_flags
from tasks.core import codehash, faults, isa, progress, runtime
from tasks.core.procs import pid_alive
from tasks.core.project import Project
from tasks.kinds import KINDS
from tasks.kinds.base import only

log = logging.getLogger("pipeline")

RUNNER_VERSION = 2  # the key and record format; 2: code sets in the key, record beside the folder
ALWAYS = ("tasks.core.runtime",)  # modules every stage body runs under
_LIBS = ("torch", "onnx", "onnxruntime", "transformers", "numpy", "prefect", "dvc", "great_expectations", "boto3")

Body = Callable[[Project, str, Path], dict[str, Any]]
Paths = Callable[[Project, str], dict[str, Path]]
Names = Callable[[Project, str], Iterable[str]]


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBS:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def record_path(folder: Path) -> Path:
    """The sidecar record of output folder ``data/<model>/<stage>``."""
    return folder.with_name(folder.name + ".record.json")


def read_record(folder: Path) -> dict[str, Any] | None:
    """The record of output folder ``folder``, or None (absent or unreadable)."""
    path = record_path(folder)
    if not path.is_file():
        return None
    try:
        rec: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return rec


def output_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def resolve_param(project: Project, model: str, selector: str) -> tuple[str | None, Any]:
    """``(params.yaml path or None, value)`` of one selector: ``model.<section>`` is the
    model's effective section (its own, or the default); anything else a dotted path."""
    if selector.startswith("model."):
        name = selector.removeprefix("model.")
        return project.param_path(model, name), project.section(model, name)
    node: Any = project.params
    for part in selector.split("."):
        if not isinstance(node, dict) or part not in node:
            return None, None
        node = node[part]
    return selector, node


class DiskFullError(OSError):
    """The output folder's file system ran out of space."""


# Output folders being written right now (``<stage>.partial-*``): what a cancelled run removes.
ACTIVE: set[Path] = set()
# Stages running in a child process under kernel-ISA pins, with their output folder: a
# cancelled run stops them and removes their partial folders too.
CHILDREN: dict[subprocess.Popen[bytes], Path] = {}
# Stages run in worker threads while a signal handler runs in the main thread: the handler
# and a stage's final swap (folder rename + record) take this lock, so a stage either
# commits completely before the clean-up or never commits.
_COMMIT = threading.RLock()  # re-entrant: the handler may interrupt a commit in its own thread
_STOPPING = False


class StageStopped(RuntimeError):
    """The run is stopping (a signal): a finished stage is not committed."""


def stop_commits() -> list[Path]:
    """Refuse every later commit in this process and return the partial folders in flight
    (waits while a stage is committing, so none is half swapped)."""
    global _STOPPING
    with _COMMIT:
        _STOPPING = True
        partial = set(ACTIVE)
    for child, out in list(CHILDREN.items()):
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)
        partial |= set(out.parent.glob(f"{out.name}.partial-{child.pid}-*"))
    return sorted(partial)


def reset_peak_rss() -> None:
    """Start a new peak-RSS window for this process (Linux: ``/proc/self/clear_refs``)."""
    with contextlib.suppress(OSError):  # not Linux, or not allowed: the peak then counts from the start
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float | None:
    """This process's peak resident memory since ``reset_peak_rss``, MiB (None off Linux).
    Process-wide: stages run side by side in one process share it."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return None if kb is None else round(kb / 1024, 1)


def _none(project: Project, model: str) -> list[str]:
    return []


def _nothing(project: Project, model: str) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Stage:
    """One pipeline stage, declared once.

    Attributes:
        name: stage name; its output folder is ``data/<model>/<name>``.
        body: ``(project, model, out_dir) -> summary``; writes its outputs into ``out_dir``.
        inputs: ``(project, model) -> {label: path}``: every file or folder it reads, each
            hashed whole (DVC ``deps``).
        params: ``(project, model) -> selectors`` it reads: ``seed``, ``model.prune`` (the
            model's effective section), ``recipes.drop-in``... (DVC ``params``).
        uses: ``(project, model) -> kind capabilities`` it calls (``tasks/kinds/base.py``).
        code: ``(project, model) -> modules`` its params name through a registry (recipe
            steps); the stage's own module and the kind adapter are always in.
        pinned: ``(project, model) -> bool``: the stage trains or fine-tunes (or computes a
            training target), so it runs under ``reproducibility.isa``'s kernel pins
            (``tasks/core/isa.py``), in a child process when this one was not started under them.
        extra: ``(project, model) -> values`` in the key that params.yaml does not hold,
            such as this machine's int8 preset and the hash of its kernel profile.
        watches: ``(project, model) -> paths`` another DVC stage writes, whose content
            ``extra`` already puts in the key: DVC ``deps`` only, so ``dvc repro`` re-runs
            the stage when they change (the kernel profile: ``tasks/pools.py``).
        version: bump only for what code hashing cannot see, such as an output format.
        outs: DVC outputs beyond the folder (``None``: the folder), for the report's metrics.
    """

    name: str
    body: Body
    inputs: Paths
    params: Names
    uses: Names = _none
    code: Names = _none
    pinned: Callable[[Project, str], bool] = lambda p, m: False
    extra: Callable[[Project, str], dict[str, Any]] = _nothing
    watches: Callable[[Project, str], list[Path]] = lambda p, m: []
    version: int = 1
    outs: dict[str, Any] | None = field(default=None)

    @property
    def module(self) -> str:
        return str(self.body.__module__)

    def entries(self, project: Project, model: str) -> list[str]:
        """The code set's entry points: this stage's module, the runtime, the model's kind
        adapter and the capabilities the stage calls, and registry-named modules."""
        kind = KINDS[project.kind_name(model)].partition(":")[0]
        uses = sorted(set(self.uses(project, model)))
        return [self.module, *ALWAYS, kind, *(f"{kind}@{u}" for u in uses), *self.code(project, model)]

    def code_set(self, project: Project, model: str) -> list[str]:
        return codehash.closure(self.entries(project, model))

    def resolved_params(self, project: Project, model: str) -> dict[str, tuple[str | None, Any]]:
        """Every params.yaml entry the stage reads; a pinned stage also reads its kernel-ISA profile."""
        selectors = [*self.params(project, model), *(["reproducibility.isa"] if self.pinned(project, model) else [])]
        return {s: resolve_param(project, model, s) for s in selectors}

    def key(self, project: Project, model: str) -> tuple[str, dict[str, Any]]:
        """(key, the material it hashes). Raises if an input is missing."""
        hashes = {}
        for label, path in self.inputs(project, model).items():
            if not path.exists():
                raise FileNotFoundError(
                    f"stage {self.name} of {model}: input {label} missing at {path}; run the upstream stage first"
                )
            hashes[label] = sha256_tree(path)
        material = {
            "stage": self.name,
            "version": [RUNNER_VERSION, self.version],
            "params": {s: value for s, (_, value) in self.resolved_params(project, model).items()},
            "extra": self.extra(project, model),
            "inputs": hashes,
            "code": codehash.code_hashes(self.entries(project, model)),
        }
        return sha256_json(material), material

    def up_to_date(self, project: Project, model: str) -> dict[str, Any] | None:
        """The record of a current, intact output, or None."""
        out = project.stage_dir(model, self.name)
        if read_record(out) is None:
            return None  # nothing to compare: skip hashing the inputs
        return _current(out, self.key(project, model)[0])

    def run(self, model: str, root: str | Path = ".") -> dict[str, Any]:
        """Run the stage for ``model`` in project ``root`` (skipped when up to date)."""
        project = Project.at(root)
        project.check(model)
        out = project.stage_dir(model, self.name)
        key, material = self.key(project, model)  # inputs are hashed once per run
        current = _current(out, key)
        if current is not None:
            log.info("%s/%s is up to date (key %s)", model, self.name, key[:12])
            return current
        profile = isa.profile_name(project.params) if self.pinned(project, model) else None
        if profile is not None and not isa.in_effect(profile):
            return self._run_pinned(project, model, profile, key)
        runtime.configure(project.seed, project.threads)
        if profile is not None:
            isa.configure_torch(profile)
        remove_dead_partials(out)
        tmp = partial(out)
        t0 = time.perf_counter()
        log.info("%s/%s: running", model, self.name)
        reset_peak_rss()
        try:
            with only(frozenset(self.uses(project, model))), progress.stage(project.data, model, self.name):
                summary = self.body(project, model, tmp)
        except OSError as e:
            discard(tmp)
            if e.errno == errno.ENOSPC:
                raise DiskFullError(
                    errno.ENOSPC,
                    f"disk full while writing {out}: no space left on device; the previous output is untouched",
                ) from e
            raise
        except BaseException:
            discard(tmp)  # never leave a half-written output behind
            raise
        faults.point(f"{self.name}:built")
        record = {
            "stage": self.name,
            "model": model,
            "key": key,
            **material,
            "outputs": output_hashes(tmp),
            "versions": library_versions(),
            "seed": project.seed,
            "threads": project.threads,
            "isa": isa.effective(profile) if profile else {"profile": None, "cpu": cpu()[0], "cpu_flags": simd_flags()},
            "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": peak_rss_mb(),
            "summary": summary,
        }
        commit(tmp, out, record)
        log.info("%s/%s: done in %.1f s, peak RSS %s MiB", model, self.name, record["seconds"], record["peak_rss_mb"])
        return record

    def _run_pinned(self, project: Project, model: str, profile: str, key: str) -> dict[str, Any]:
        """Run the stage in ``python -m tasks`` started under ``profile``'s pins (they must be
        in place before torch runs a kernel); its record, once the child has committed."""
        out = project.stage_dir(model, self.name)
        cmd = [sys.executable, "-m", "tasks", self.name, model, "--root", str(project.root)]
        log.info("%s/%s: running in a child process under the %r kernel pins", model, self.name, profile)
        # the child imports what this process can (a team's factory module on sys.path included)
        path = os.pathsep.join(p for p in sys.path if p)
        child = subprocess.Popen(cmd, env={**isa.environment(profile), "PYTHONPATH": path})
        CHILDREN[child] = out
        try:
            code = child.wait()
        finally:
            CHILDREN.pop(child, None)
        if _STOPPING:
            raise StageStopped(f"{model}/{self.name}: the run is stopping; the child was stopped")
        record = _current(out, key)
        if code != 0 or record is None:
            remove_dead_partials(out)
            raise RuntimeError(f"stage {self.name} of {model} failed in its pinned child process (exit {code})")
        return record


def partial(out: Path) -> Path:
    """A new, empty partial folder for ``out``, removed by a stop or crash clean-up until committed."""
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    ACTIVE.add(tmp)
    return tmp


def discard(tmp: Path) -> None:
    ACTIVE.discard(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def commit(tmp: Path, out: Path, record: dict[str, Any]) -> None:
    """Swap the complete folder ``tmp`` in as ``out``, then write its record beside it."""
    with _COMMIT:
        if _STOPPING:
            discard(tmp)  # the clean-up may have removed it already
            raise StageStopped(f"{out}: the run is stopping; {tmp} is not committed")
        record_path(out).unlink(missing_ok=True)  # no record while the folder is swapped
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        ACTIVE.discard(tmp)
        _write_atomic(record_path(out), record)


def remove_dead_partials(out: Path) -> list[Path]:
    """Remove ``out``'s partial folders left by processes that are gone; returns them."""
    gone = []
    for tmp in out.parent.glob(f"{out.name}.partial-*"):
        pid = tmp.name.removeprefix(f"{out.name}.partial-").split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            gone.append(tmp)
    return gone


def _write_atomic(path: Path, value: Any) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    write_json(tmp, value)
    tmp.replace(path)


def _current(folder: Path, key: str) -> dict[str, Any] | None:
    """The record of ``folder`` if it was made under ``key`` and every output still hashes as recorded."""
    rec = read_record(folder)
    if rec is None or rec.get("key") != key or not folder.is_dir() or output_hashes(folder) != rec.get("outputs"):
        return None
    return rec
