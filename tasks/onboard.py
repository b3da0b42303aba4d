"""Add a team's own model to the catalogue: ``python -m flows.cli add`` (README, "Compress
your own model").

From the model file and its evaluation data (a path, ``file://`` or ``s3://``), ``add`` reads
what the files say, takes (or asks for) only what they cannot, checks model and data with
the code the ``baseline`` stage runs, and writes a minimal ``kind: custom`` entry into
params.yaml: ``kind``, ``source``, ``arch``, ``eval``, ``tolerance``; every other section
comes from ``defaults:``.

- Input spec: an ONNX model's input name, shape and dtype are read from its graph (values
  given anyway are checked against it). Safetensors, TorchScript and ``.pt2`` files do not
  record an input shape: it is given, and safetensors weights need their factory.
- Never in a file: the normalisation (``mean``, ``std``; default none) and a text model's
  tokenizer.
- Tolerance: the task's default (``DEFAULT_TOLERANCE``) unless one is given.
- Every file is hashed as ``fetch`` will check it (``hashing.sha256_tree``).

Every error (a wrong file, an unknown task or metric, data that does not fit the model's
input) comes before params.yaml is touched.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import onnx
import yaml

from model_compression.byo import data as byo_data
from model_compression.byo.spec import DTYPES, TASKS, EvalSpec, InputSpec, ModelSpec, format_of
from model_compression.config import from_dict
from model_compression.hashing import sha256_tree
from tasks.core import catalogue
from tasks.core.project import SECTIONS, Project
from tasks.gates import tolerance as tolerances
from tasks.storage import s3 as s3io
from tasks.storage.sources import local_folder

Ask = Callable[[str, str, str | None], str]
"""How a missing value is asked for: ``(flag, question, default or None) -> answer``."""

# The largest drop against fp32 an entry gets when none is given, per task: the task's
# headline metric (model_compression/byo/evaluate.py) and a drop small enough that a user
# would not notice it, large enough that int8 usually passes.
DEFAULT_TOLERANCE: dict[str, tuple[str, float]] = {
    "classification": ("accuracy", 0.01),  # one point of accuracy
    "agreement": ("top1_agreement", 0.02),  # 2 % of top-1 predictions may change
    "text-embedding": ("pairs_spearman", 0.02),  # Spearman rho of the pair cosines
}
PLACEHOLDER = "0" * 64  # a sha256 before the file is read: the early checks need a well-formed entry
FLAGS = {"model": "--model", "data": "--eval", "probe": "--probe"}


class Missing(ValueError):
    """A value the files cannot give and the request lacks; ``flag`` names the option."""

    def __init__(self, flag: str, why: str) -> None:
        super().__init__(f"{why}: give {flag}")
        self.flag = flag


@dataclass(frozen=True)
class Request:
    """What ``flows.cli add`` was given.

    Attributes:
        name: the new model's name (lower-case letters, digits, dashes).
        model: URI of the model file: a path, ``file://`` or ``s3://``.
        eval: URI of the evaluation data (``EvalSpec.data``; text-embedding: the pairs file).
        task: ``classification`` (default), ``agreement`` or ``text-embedding``.
        tolerance: ``{metric: drop}`` (``parse_tolerance``); empty: the task's default.
        probe: text-embedding: a labelled sentences file (``EvalSpec.probe``).
        format: the model format; default: from the file's suffix.
        input_name, shape, dtype: the input spec (``InputSpec``); for ONNX read from the model.
        mean, std: normalisation ``(x - mean) / std``, one value or one per channel; None: none.
        tokenizer, max_length: a text model's tokenizer folder and token limit.
        factory, factory_args: safetensors: ``package.module:function`` and its keyword arguments.
    """

    name: str
    model: str
    eval: str
    task: str = "classification"
    tolerance: dict[str, Any] = field(default_factory=dict)
    probe: str | None = None
    format: str | None = None
    input_name: str | None = None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    mean: float | tuple[float, ...] | None = None
    std: float | tuple[float, ...] | None = None
    tokenizer: str | None = None
    max_length: int | None = None
    factory: str | None = None
    factory_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Added:
    """The entry written, and what ``add`` has to say about it: ``(topic, text)`` lines."""

    name: str
    entry: dict[str, Any]
    notes: list[tuple[str, str]]


# -- flags ----------------------------------------------------------------------------------
def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,28,28"``, ``"1x28x28"`` or ``"[1, 28, 28]"`` -> ``(1, 28, 28)``: one example, no batch axis."""
    parts = [p for p in re.split(r"[\s,x\[\]()]+", text.strip()) if p]
    dims = tuple(int(p) for p in parts if p.isdigit())
    if not dims or len(dims) != len(parts) or min(dims) < 1:
        raise ValueError(
            f"--shape must be positive integers such as 1,28,28 (one example, no batch axis), got {text!r}"
        )
    return dims


def parse_numbers(text: str, flag: str) -> float | tuple[float, ...]:
    """``"16"`` -> 16.0; ``"0.485,0.456,0.406"`` -> one value per channel."""
    try:
        values = tuple(float(p) for p in text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"{flag} must be a number or numbers separated by commas, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def parse_tolerance(items: list[str]) -> dict[str, Any]:
    """``METRIC=DROP`` items -> ``{metric: tolerance}``: DROP is an absolute drop (``0.01``),
    a relative one (``1%``: ``{relative: 0.01}``) or ``interval`` (tasks/gates/tolerance.py)."""
    out: dict[str, Any] = {}
    for item in items:
        metric, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not metric or not value:
            raise ValueError(f"--tolerance must be METRIC=DROP, e.g. accuracy=0.01, got {item!r}")
        if value == tolerances.INTERVAL:
            out[metric] = value
            continue
        try:
            number = float(value.removesuffix("%"))
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"--tolerance {metric}: the drop must be a number, N% or 'interval', got {value!r}")
        out[metric] = {"relative": number / 100} if value.endswith("%") else number
    return out


def parse_assignments(items: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` items -> ``{key: value}``, each value read as YAML (``hidden=64`` -> 64)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} must be KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def from_flags(
    tolerance: list[str], shape: str | None, mean: str | None, std: str | None, factory_arg: list[str], **rest: Any
) -> Request:
    """A ``Request`` from command-line strings (``flows.cli add``); ``rest`` are its other fields."""
    return Request(
        tolerance=parse_tolerance(tolerance),
        shape=None if shape is None else parse_shape(shape),
        mean=None if mean is None else parse_numbers(mean, "--mean"),
        std=None if std is None else parse_numbers(std, "--std"),
        factory_args=parse_assignments(factory_arg, "--factory-arg"),
        **rest,
    )


def _need(value: Any, flag: str, why: str, ask: Ask | None, parse: Callable[[str], Any] = str) -> Any:
    """``value``, else the answer to ``ask``; without a way to ask, ``Missing``."""
    if value is not None:
        return value
    if ask is None:
        raise Missing(flag, why)
    return parse(ask(flag, why, None))


# -- files ----------------------------------------------------------------------------------
def _stored(uri: str) -> str:
    """The URI as the entry keeps it: a plain path made absolute (fetch may run elsewhere)."""
    return uri if "://" in uri else str(Path(uri).resolve())


@contextmanager
def _local(project: Project, uris: dict[str, str]) -> Iterator[dict[str, Path]]:
    """``{role: local path}``: a local URI as it is; an ``s3://`` one downloaded as ``fetch``
    downloads it, into a temporary folder removed afterwards."""
    out = {}
    for role, uri in uris.items():
        if not uri.startswith("s3://"):
            try:
                out[role] = local_folder(uri)
            except FileNotFoundError:
                raise FileNotFoundError(f"{FLAGS[role]} {uri}: no such file or folder") from None
    with tempfile.TemporaryDirectory(prefix="add-") as tmp:
        remote = {role: uri for role, uri in uris.items() if role not in out}
        if remote:
            with s3io.available(project) as (s3, settings):
                for role, uri in remote.items():
                    out[role] = Path(tmp) / (role + PurePosixPath(uri.rstrip("/")).suffix)
                    s3io.download_uri(s3, settings, uri, out[role])
        if out["model"].is_dir():
            raise ValueError(f"--model {uris['model']} is a folder: give the model file")
        yield out


# -- the entry's sections ---------------------------------------------------------------------
def _eval_section(req: Request, digests: dict[str, str]) -> dict[str, Any]:
    """The ``eval`` section; a file not hashed yet has a placeholder sha256."""
    out: dict[str, Any] = {"task": req.task, "data": req.eval, "sha256": digests.get("data", PLACEHOLDER)}
    if req.probe is not None:
        out.update(probe=req.probe, probe_sha256=digests.get("probe", PLACEHOLDER))
    return out


def _tolerance(project: Project, req: Request) -> tuple[dict[str, Any], str]:
    """The tolerance and where it came from, checked (task, metric names, values) on an entry
    with placeholder hashes, before any file is read."""
    if req.tolerance:
        tol, said = dict(req.tolerance), "given"
    else:
        metric, drop = DEFAULT_TOLERANCE.get(req.task, ("accuracy", 0.01))  # an unknown task fails below
        tol, said = {metric: drop}, f"the default for {req.task}"
    entry = {
        "kind": "custom",
        "source": {"uri": req.model, "sha256": PLACEHOLDER},
        "eval": _eval_section(req, {}),
        "tolerance": tol,
    }
    models = {**project.params["models"], req.name: entry}
    tolerances.tolerance(catalogue.candidate(project.root, {**project.params, "models": models}), req.name)
    return tol, said


def _normalisation(req: Request, ask: Ask | None) -> dict[str, Any]:
    """``mean``/``std`` as given (or answered); none given: no normalisation (0 and 1)."""
    out: dict[str, Any] = {}
    for key, value, default, what in (
        ("mean", req.mean, "0", "subtracted from every input value"),
        ("std", req.std, "1", "every input value is divided by, after the mean"),
    ):
        if value is None and ask is not None:
            answer = ask(f"--{key}", f"normalisation: the {key} {what} (one per channel: a,b,c)", default)
            value = None if answer.strip() == default else parse_numbers(answer, f"--{key}")
        if value is not None:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _text_input(req: Request, tokenizer: str) -> dict[str, Any]:
    """``arch.input`` of a text model: its tokenizer (and token limit, when given)."""
    return {"tokenizer": tokenizer, **({"max_length": req.max_length} if req.max_length is not None else {})}


def _onnx_input(path: Path, req: Request, ask: Ask | None) -> tuple[dict[str, Any], str]:
    """``arch.input`` of an ONNX model: name, shape and dtype read from the graph."""
    from model_compression.byo.load import onnx_inputs

    inputs = onnx_inputs(path)  # a file that is not ONNX fails here
    names = [n for n, _, _ in inputs]
    if req.tokenizer is not None or "input_ids" in names or req.task == "text-embedding":
        why = f"{path.name} takes {names}: a text model, whose tokenizer folder is not in the file"
        return _text_input(req, _need(req.tokenizer, "--tokenizer", why, ask)), "text, tokenized as given"
    if len(inputs) != 1:
        raise ValueError(
            f"{path.name} takes inputs {names}: a custom model takes one tensor (or input_ids with --tokenizer)"
        )
    name, dims, onnx_type = inputs[0]
    dtype = _numpy_dtype(onnx_type, path)
    fixed = dims[1:] if dims[1:] and all(isinstance(d, int) and d > 0 for d in dims[1:]) else None
    why = f"{path.name}'s input {name!r} has shape {dims}: one example's shape is not fixed in the file"
    shape = req.shape or fixed or _need(None, "--shape", why, ask, parse_shape)
    given = [f for f, v in (("name", req.input_name), ("shape", req.shape), ("dtype", req.dtype)) if v is not None]
    said = "read from the model" + (f" ({', '.join(given)} given, checked against it)" if given else "")
    return {"name": req.input_name or name, "shape": list(shape), "dtype": req.dtype or dtype}, said


def _numpy_dtype(onnx_type: str, path: Path) -> str:
    """The numpy name of an ONNX element type (``float`` -> ``float32``), one ``InputSpec`` takes."""
    name = str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx.TensorProto.DataType.Value(onnx_type.upper()))))
    if name not in DTYPES:
        raise ValueError(f"{path.name} takes {onnx_type} inputs; custom models take one of {list(DTYPES)}")
    return name


def _given_input(req: Request, fmt: str, ask: Ask | None) -> tuple[dict[str, Any], str]:
    """``arch.input`` of a torch format, which records no input spec: from the request."""
    if req.tokenizer is not None or req.task == "text-embedding":
        why = "a text model's tokenizer folder is not in the file"
        return _text_input(req, _need(req.tokenizer, "--tokenizer", why, ask)), "text, tokenized as given"
    shape = _need(req.shape, "--shape", f"a {fmt} file does not record its input shape", ask, parse_shape)
    out: dict[str, Any] = {"name": req.input_name} if req.input_name is not None else {}
    out["shape"] = list(shape)
    if req.dtype is not None:
        out["dtype"] = req.dtype
    return out, "given"


def _arch(req: Request, fmt: str, inp: dict[str, Any], ask: Ask | None) -> dict[str, Any]:
    """The ``arch`` section: the input with its normalisation, and a safetensors model's factory."""
    arch: dict[str, Any] = {"format": req.format} if req.format is not None else {}
    if not inp.get("tokenizer"):
        inp = {**inp, **_normalisation(req, ask)}
        for key in ("mean", "std"):
            if isinstance(inp.get(key), list) and len(inp[key]) != inp["shape"][0]:
                raise ValueError(
                    f"--{key} gives {len(inp[key])} values, one per channel, but the input {inp['shape']} has "
                    f"{inp['shape'][0]} channels (its first axis)"
                )
    arch["input"] = inp
    if fmt == "safetensors":
        why = "safetensors weights need the function that builds their module, 'package.module:function'"
        arch["factory"] = _need(req.factory, "--factory", why, ask)
        if req.factory_args:
            arch["factory_args"] = dict(req.factory_args)
    elif req.factory is not None:
        raise ValueError(f"--factory applies to safetensors weights only; {req.model} is {fmt}")
    return arch


# -- checks, as the baseline stage makes them -----------------------------------------------
def check_model(path: Path, spec: ModelSpec, fmt: str) -> None:
    """The model opens and takes the declared input (``baseline``'s checks, before any compute)."""
    from model_compression.byo import load as byo_load

    if fmt == "onnx":
        byo_load.check_onnx_inputs(path, spec.input)
        return
    byo_load.check_torch_inputs(byo_load.load_torch(path, spec, fmt), spec.input)


def check_data(files: dict[str, Path], spec: InputSpec, ev: EvalSpec, seed: int) -> int:
    """The evaluation data reads as the task needs and fits the input spec (``Custom``'s
    reading, ``baseline``'s split); returns the number of examples (text pairs: pairs)."""
    if ev.task == "text-embedding":
        n = len(byo_data.read_pairs(files["data"])[2])
        if "probe" in files and byo_data.read_raw(files["probe"], spec).y is None:
            raise ValueError(f"--probe ({files['probe'].name}) has no 'label' column: the probe needs labels")
    else:
        where = f"--eval ({files['data'].name})"
        examples = byo_data.preprocess(byo_data.read_raw(files["data"], spec), spec, where)
        if ev.task == "classification" and examples.y is None:
            raise ValueError(f"{where} has no labels ('y' array or 'label' column): classification needs labels")
        n = len(examples)
    byo_data.split(n, ev.calibration_split, seed)  # too few examples to split fails here, as in baseline
    return n


# -- add ------------------------------------------------------------------------------------
def add(root: str | Path, request: Request, ask: Ask | None = None) -> Added:
    """Check ``request`` against its files and write its entry into ``root``/params.yaml;
    ``ask`` (None: never ask) is called for a value that is needed and neither given nor
    in the files. Nothing is written unless every check passes."""
    project = Project.at(root)
    original = catalogue.read(project.root)
    catalogue.check_name(project, request.name)
    probe = None if request.probe is None else _stored(request.probe)
    req = replace(request, model=_stored(request.model), eval=_stored(request.eval), probe=probe)
    if req.task not in TASKS:
        raise ValueError(f"--task {req.task!r} is not a task; one of {list(TASKS)}")
    try:
        fmt = format_of(req.model, req.format)
    except ValueError as e:
        raise ValueError(f"{e} (on the command line: --format)") from None
    tol, tol_said = _tolerance(project, req)
    arch, digests, n, notes = _inspect(project, req, fmt, ask)
    ev = _eval_section(req, digests)
    entry = {"kind": "custom", "source": {"uri": req.model, "sha256": digests["model"]}, "arch": arch, "eval": ev,
             "tolerance": tol}  # fmt: skip
    text = catalogue.with_entry(original, req.name, entry, {"tolerance": f"flows.cli add: {tol_said}"})
    written = catalogue.candidate(project.root, yaml.safe_load(text))
    written.check(req.name)
    tolerances.tolerance(written, req.name)
    catalogue.replace(project.root, original, text)
    drops = ", ".join(f"{metric} {_drop(v)}" for metric, v in tol.items())
    hint = "" if req.tolerance else "; --tolerance METRIC=DROP sets it"
    return Added(req.name, entry, [
        ("model", f"{fmt} {req.model} (sha256 {digests['model'][:12]})"),
        *notes,
        ("eval", f"{req.task} on {n} examples of {req.eval} (sha256 {digests['data'][:12]})"),
        ("tolerance", f"{drops} against fp32 ({tol_said}{hint})"),
        ("defaults", _from_defaults(written, req.name)),
        ("params.yaml", f"models.{req.name} written; catalogue: {', '.join(written.catalogue())}"),
    ])  # fmt: skip


def _from_defaults(project: Project, name: str) -> str:
    """Which sections the entry takes from ``defaults:``: what will run for it."""
    entry = project.entry(name)
    taken = [s for s in SECTIONS if s not in entry and project.section(name, s) is not None]
    return (
        f"{', '.join(taken)} as in params.yaml defaults:" if taken else "none: params.yaml defaults: requests nothing"
    )


def _drop(tolerance: Any) -> str:
    """One tolerance in words (tasks/gates/tolerance.py)."""
    if tolerance == tolerances.INTERVAL:
        return "with no significant drop (bootstrap interval)"
    if isinstance(tolerance, dict):
        return f"may drop by {tolerance['relative']:.2%} of its value"
    return f"may drop by {tolerance}"


def _inspect(
    project: Project, req: Request, fmt: str, ask: Ask | None
) -> tuple[dict[str, Any], dict[str, str], int, list[tuple[str, str]]]:
    """Read, check and hash the files: ``(arch section, {role: sha256}, examples, notes)``."""
    early = None if fmt == "onnx" else _given_input(req, fmt, ask)  # asked before any download
    uris = {"model": req.model, "data": req.eval, **({"probe": req.probe} if req.probe else {})}
    with _local(project, uris) as files:
        inp, said = early or _onnx_input(files["model"], req, ask)
        arch = _arch(req, fmt, inp, ask)
        check_model(files["model"], from_dict(ModelSpec, arch, f"{req.name}.arch"), fmt)
        digests = {role: sha256_tree(path) for role, path in files.items()}
        spec = from_dict(InputSpec, arch["input"], f"{req.name}.arch.input")
        n = check_data(files, spec, from_dict(EvalSpec, _eval_section(req, digests), f"{req.name}.eval"), project.seed)
    return arch, digests, n, _input_notes(arch, said)


def _input_notes(arch: dict[str, Any], said: str) -> list[tuple[str, str]]:
    """The console's lines on the input spec, its normalisation and the factory."""
    inp = arch["input"]
    if "tokenizer" in inp:
        out = [("input", f"text, tokenizer {inp['tokenizer']}"), ("normalisation", "none: the tokenizer's")]
    else:
        shape = f"{inp.get('name', 'input')} {inp['shape']} {inp.get('dtype', 'float32')}, {said}"
        given = {"mean", "std"} & set(inp)
        norm = f"mean {inp.get('mean', 0)}, std {inp.get('std', 1)}" if given else "none (--mean/--std set it)"
        out = [("input", shape), ("normalisation", norm)]
    if "factory" in arch:
        args = arch.get("factory_args")
        out.append(("factory", arch["factory"] + (f" {catalogue.flow(args)}" if args else "")))
    return out
