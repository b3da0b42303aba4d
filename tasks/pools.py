"""Hardware pools: where artifacts are benchmarked and what they are published for.

A pool is a kind of machine the models ship to. ``params.yaml`` lists them::

    pools:
      local: {work_pool: null, preset: auto}              # this machine, in-process
      cpu-avx2: {work_pool: cpu-avx2, timeout_s: 900}    # any machine running a worker
    targets: [local]                                      # the pools a run serves

The pool with ``work_pool: null`` is the machine running the pipeline: its benchmark and
publish are the ``benchmark``/``publish`` stages that ``dvc repro`` runs too. Every other
pool is a Prefect work pool; the flow sends its artifacts there with ``run_deployment``
(``flows/dispatch.py``). ``preset`` is the int8 preset for the pool (``auto``: chosen from
the pool's hardware fingerprint; or one of ``quantize/presets.PRESETS``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_compression.config import from_dict
from model_compression.hashing import sha256_json
from model_compression.quantize.presets import PRESETS, preset_for
from model_compression.runtime.fingerprint import fingerprint
from tasks.core.project import Project

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
DEPLOYMENT_FLOW = "benchmark-onnx"  # the flow name of flows/pool_bench.py


@dataclass(frozen=True)
class PoolSpec:
    """One hardware pool.

    Attributes:
        name: lower-case letters, digits and dashes; part of every published key.
        work_pool: the Prefect work pool whose workers run on that hardware; ``None``
            means this machine, in-process.
        deployment: the benchmark deployment to run there (default
            ``benchmark-onnx/<name>``, as declared in prefect.yaml).
        timeout_s: how long a dispatched benchmark may take, queueing included, in
            seconds (default 900). Past it the pool is reported as not benchmarked.
        preset: int8 preset, ``auto`` (default: from the pool's fingerprint) or a name
            in ``PRESETS``.
        publish_slower_int8: publish an int8 artifact even when it ran slower than fp32
            on this pool (default False: it is flagged and withheld). Tests set it, since
            which of two tiny models is faster is noise.
    """

    name: str
    work_pool: str | None = None
    deployment: str = ""
    timeout_s: float = 900.0
    preset: str = "auto"
    publish_slower_int8: bool = False

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValueError(f"pools: name must be lower-case letters, digits and dashes, got {self.name!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"pools.{self.name}.timeout_s must be > 0, got {self.timeout_s}")
        if self.preset != "auto" and self.preset not in PRESETS:
            raise ValueError(f"pools.{self.name}.preset must be auto or one of {sorted(PRESETS)}, got {self.preset!r}")

    @property
    def inline(self) -> bool:
        return self.work_pool is None

    @property
    def deployment_name(self) -> str:
        return self.deployment or f"{DEPLOYMENT_FLOW}/{self.name}"


def pools(project: Project) -> dict[str, PoolSpec]:
    """Every pool in params (default: just ``local``, this machine)."""
    raw = project.params.get("pools") or {"local": {}}
    if not isinstance(raw, dict):
        raise ValueError("params.yaml pools must be a mapping of pool name to settings")
    out = {}
    for name, values in raw.items():
        out[name] = from_dict(PoolSpec, {**(values or {}), "name": str(name)}, f"pools.{name}")
    inline = [p.name for p in out.values() if p.inline]
    if len(inline) != 1:
        raise ValueError(f"params.yaml pools: exactly one pool must have work_pool: null (this machine), got {inline}")
    return out


def local_pool(project: Project) -> PoolSpec:
    """The pool that is this machine: what ``dvc repro`` benchmarks and publishes for."""
    return next(p for p in pools(project).values() if p.inline)


def targets(project: Project, chosen: list[str] | None = None) -> list[PoolSpec]:
    """The pools a run serves: ``chosen`` (a flow parameter) or ``targets`` in params."""
    known = pools(project)
    names = chosen or project.params.get("targets") or [local_pool(project).name]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown pool(s) {unknown}; params.yaml pools: {sorted(known)}")
    return [known[n] for n in names]


def remote_targets(project: Project, chosen: list[str] | None = None) -> list[str]:
    """The names of the pools a run serves through a Prefect work pool (not this machine)."""
    return [p.name for p in targets(project, chosen) if not p.inline]


def kernels_path(project: Project, spec: PoolSpec | None = None) -> Path:
    """``data/pools/<pool>/kernels.json``: the pool's kernel profiles, one per int8 preset
    (``python -m tasks kernels``), committed with the code so a rebuild reads the same one."""
    return project.root / "data" / "pools" / (spec or local_pool(project)).name / "kernels.json"


def kernel_profile(project: Project, preset: str, spec: PoolSpec | None = None) -> dict[str, Any] | None:
    """The kernel profile of ``preset`` on the pool (default: this machine's), or None."""
    path = kernels_path(project, spec)
    if not path.is_file():
        return None
    profiles: dict[str, Any] = json.loads(path.read_text()).get("presets", {})
    return profiles.get(preset)


def kernel_watch(project: Project, model: str = "") -> list[Path]:
    """The kernel profile file, which the stages that quantize watch (``Stage.watches``):
    its content for this preset is in their key through ``int8_target``."""
    return [kernels_path(project)]


def int8_target(project: Project) -> dict[str, Any]:
    """What int8 is built for on this machine's pool, for a stage key: the preset and the
    hash of its kernel profile (None without one). A new profile re-runs the stages that
    quantize; a profile added for another preset does not."""
    preset = resolve_preset(local_pool(project))
    profile = kernel_profile(project, preset)
    return {"preset": preset, "kernels": None if profile is None else sha256_json(profile)}


def resolve_preset(spec: PoolSpec, fp: dict[str, Any] | None = None) -> str:
    """The pool's int8 preset: pinned in params, or chosen from its fingerprint ``fp``
    (for the inline pool, this machine's)."""
    if spec.preset != "auto":
        return spec.preset
    if fp is None:
        if not spec.inline:
            raise ValueError(f"pool {spec.name!r} has preset auto: its fingerprint is needed (probe it first)")
        fp = fingerprint()
    return preset_for(fp)


def profile_kernels(project: Project, force: bool = False) -> bool:
    """Measure this machine's kernel profile for its preset into ``kernels_path`` (settings:
    ``kernels`` in params.yaml, a ``KernelProfileConfig``), unless one is there already
    (``force`` re-measures). Returns whether the file changed. The other presets' profiles
    in the file are kept: each pool's file holds one per CPU family it has run on."""
    import tempfile

    from model_compression.quantize.kernels import KernelProfileConfig, measure

    spec = local_pool(project)
    preset = resolve_preset(spec)
    path = kernels_path(project, spec)
    held = json.loads(path.read_text()) if path.is_file() else {"presets": {}}
    if preset in held["presets"] and not force:
        return False
    cfg = from_dict(KernelProfileConfig, project.params.get("kernels") or {}, "kernels")
    with tempfile.TemporaryDirectory(prefix="kernels-") as work:
        held["presets"][preset] = measure(cfg, Path(work))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(held, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)  # readers see the old profile or the new one, never half of one
    return True
