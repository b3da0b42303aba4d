"""Health checks for operators (``python -m flows.cli doctor``): the result record, the
runner, and the checks of this machine and its params.yaml.

A check is a function of ``Options`` returning ``Result`` records, one per thing checked
(a bucket, a work pool...): a pass or a fail with the fix. ``flows/doctor.py`` lists the
checks (``CHECKS``); the S3 checks are in ``tasks/storage/doctor.py``, the Prefect ones in
``flows/doctor.py`` (stages never import Prefect).
"""

from __future__ import annotations

import contextvars
import shutil
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from tasks.core.project import Project

CODE = Path(__file__).resolve().parents[2]  # the checkout holding pyproject.toml and constraints.txt
PIN_FILES = (CODE / "pyproject.toml", CODE / "constraints.txt")
MIN_FREE_GIB = 10.0  # default of params.yaml doctor.min_free_gib: free space data/ needs, GiB
REINSTALL = "rm -f .venv/.installed-* && make setup"  # bootstrap.sh skips a venv whose stamp is current


@dataclass(frozen=True)
class Result:
    """One line of the report. name: what was checked ("s3 bucket model-zoo"); ok: pass or
    fail; detail: what was found; fix: what to do about a fail (empty for a pass)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Options:
    """root: the project root (params.yaml, data/); start_s3: start the embedded SeaweedFS
    to check it (default: report that it starts on demand); create_buckets: create the
    configured buckets an S3 endpoint lacks (default: report them)."""

    root: Path = Path(".")
    start_s3: bool = False
    create_buckets: bool = False


@dataclass(frozen=True)
class Check:
    """A registered check: ``fn`` and how long it may take in all (seconds). The checks'
    network calls have their own short timeouts; this one stops the report from waiting on
    anything else that hangs."""

    fn: Callable[[Options], list[Result]]
    timeout_s: float = 30.0


@dataclass
class _Running:
    started: float  # time.monotonic()
    thread: threading.Thread = field(init=False)
    results: list[Result] = field(default_factory=list)
    error: Exception | None = None


def _start(check: Check, opts: Options) -> _Running:
    running = _Running(time.monotonic())

    def body() -> None:
        try:
            running.results = check.fn(opts)
        except Exception as e:  # a check that breaks is a failed check, not a broken report
            running.error = e

    # A copy of the caller's context: Prefect's settings (temporary_settings) live in a contextvar.
    running.thread = threading.Thread(target=contextvars.copy_context().run, args=(body,), daemon=True)
    running.thread.start()
    return running


def run(checks: Mapping[str, Check], opts: Options) -> list[Result]:
    """Run ``checks`` side by side; their results in the order of ``checks``. A check that
    raises or outlives its timeout is one failed line under its name."""
    started = {name: _start(check, opts) for name, check in checks.items()}
    out: list[Result] = []
    for name, running in started.items():
        timeout_s = checks[name].timeout_s
        running.thread.join(max(0.0, running.started + timeout_s - time.monotonic()))
        if running.thread.is_alive():
            out.append(Result(name, False, f"did not finish within {timeout_s:g} s", "run doctor again; if it "
                              "hangs again, what this check reaches (server, disk) does not answer"))  # fmt: skip
        elif running.error is not None:
            error = f"{type(running.error).__name__}: {running.error}"
            out.append(Result(name, False, f"could not check: {error}", "fix the cause above and run doctor again"))
        else:
            out.extend(running.results)
    return out


def catalogue(opts: Options) -> list[Result]:
    """params.yaml loads and every catalogue entry passes ``Project.check`` (its recipes included)."""
    try:
        project = Project.at(opts.root)
        models = project.catalogue()
    except Exception as e:  # YAML, a missing file or a missing section: all say "does not load"
        return [Result("catalogue", False, f"params.yaml does not load: {e}", "correct params.yaml")]
    failed = []
    for model in models:
        try:
            project.check(model)
            for name in project.recipe_names(model):
                project.recipe_spec(model, name)
        except Exception as e:  # whatever the entry's kind raises on a malformed section
            failed.append(Result(f"catalogue {model}", False, str(e), f"correct models.{model} in params.yaml "
                                 f"(python -m flows.cli plan {model} shows the same error)"))  # fmt: skip
    return failed or [Result("catalogue", True, f"{len(models)} models parse: {', '.join(models)}")]


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk(opts: Options) -> list[Result]:
    """Free space on the filesystem of data/ against params.yaml ``doctor.min_free_gib``
    (GiB, default ``MIN_FREE_GIB``)."""
    project = Project.at(opts.root)
    need = float((project.params.get("doctor") or {}).get("min_free_gib", MIN_FREE_GIB))
    free = shutil.disk_usage(_existing(project.data)).free / 2**30
    detail = f"{free:.1f} GiB free for {project.data} (needs {need:g} GiB: doctor.min_free_gib)"
    fix = "free space there, put data/ on a bigger disk (a symlink works), or lower doctor.min_free_gib"
    return [Result("disk", free >= need, detail, "" if free >= need else fix)]


def _requirements(path: Path) -> Iterable[str]:
    if path.suffix == ".toml":
        return list(tomllib.loads(path.read_text()).get("project", {}).get("dependencies", []))
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]  # pip options (-r, -c, --index-url)


def pin_mismatches(files: Iterable[Path]) -> list[str]:
    """Each requirement of ``files`` (pyproject.toml dependencies, constraints.txt lines)
    that the installed distributions do not meet: missing, or a version outside its pin."""
    out = []
    for path in files:
        for line in _requirements(path):
            try:
                req = Requirement(line)
            except InvalidRequirement as e:
                out.append(f"{path.name}: cannot read {line!r} ({e})")
                continue
            if req.marker is not None and not req.marker.evaluate():
                continue  # for another platform or Python
            try:
                version = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                out.append(f"{req.name} is not installed ({path.name}: {req})")
                continue
            if not req.specifier.contains(version, prereleases=True):
                out.append(f"{req.name} {version} is installed, {path.name} pins {req.specifier}")
    return out


def pins(opts: Options, files: Iterable[Path] = PIN_FILES) -> list[Result]:
    """The installed versions meet pyproject.toml's dependencies and constraints.txt."""
    present = [f for f in files if f.is_file()]
    if not present:
        return [Result("pins", True, "no pyproject.toml or constraints.txt beside the code: nothing to compare")]
    names = " and ".join(f.name for f in present)
    bad = pin_mismatches(present)
    if bad:
        return [Result("pins", False, "; ".join(bad), f"reinstall the pinned stack: {REINSTALL}")]
    return [Result("pins", True, f"the installed versions meet {names}")]
