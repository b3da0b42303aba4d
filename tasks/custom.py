"""Catalogue entries of kind ``custom``: a team's own model and eval data, no code change.

An entry (see README, "Compress your own model")::

    source: {uri: s3://zoo/digits/model.onnx, sha256: 3f1a...}   # a path, file:// or s3://
    arch:   {format: onnx, input: {name: pixels, shape: [64], mean: 0, std: 16}}
    eval:   {task: classification, data: s3://zoo/digits/test.npz, sha256: 9b2c...}

``fetch`` downloads the model and eval files and checks every sha256; ``baseline`` checks
the model against the declared inputs and the data against the declared shape before any
compute, and records the evaluation/calibration split. The other stages call the helpers
here where a stage meets a custom model.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from model_compression.byo.data import Examples
from model_compression.distill.logits import StudentDistillConfig, distill_into
from model_compression.hashing import sha256_json, sha256_tree
from model_compression.kinds import custom
from model_compression.registry import SETTINGS, from_dict
from tasks import s3 as s3io
from tasks.project import Project
from tasks.sources import local_folder

log = logging.getLogger("pipeline")
SPLIT = "split.json"


def model_spec(project: Project, model: str) -> custom.ModelSpec:
    arch = project.entry(model).get("arch")
    if not isinstance(arch, dict):
        raise ValueError(f"{model}.arch must describe the model: format, input (and factory for safetensors)")
    return from_dict(SETTINGS["custom-arch"], arch, f"{model}.arch")


def eval_spec(project: Project, model: str) -> custom.EvalSpec:
    values = project.entry(model).get("eval")
    if not isinstance(values, dict):
        raise ValueError(f"{model}.eval must give the task and its data (see README, 'Compress your own model')")
    return from_dict(SETTINGS["custom-eval"], values, f"{model}.eval")


def source(project: Project, model: str) -> tuple[str, str]:
    """``(uri, sha256)`` of the model file."""
    src = project.entry(model).get("source")
    if not isinstance(src, dict) or set(src) != {"uri", "sha256"}:
        raise ValueError(f"{model}.source must be {{uri: <path or s3://...>, sha256: <hex>}} for a custom model")
    if not isinstance(src["sha256"], str) or len(src["sha256"]) != 64:
        raise ValueError(f"{model}.source.sha256 must be 64 hex digits, got {src['sha256']!r}")
    return str(src["uri"]), src["sha256"]


def factory_file(project: Project, model: str) -> Path | None:
    """The source file of the entry's factory module, if it has one."""
    import importlib.util

    factory = model_spec(project, model).factory
    if factory is None:
        return None
    try:
        spec = importlib.util.find_spec(factory.partition(":")[0])
    except (ImportError, ValueError):
        return None  # the baseline stage names the import error
    return Path(spec.origin) if spec is not None and spec.origin else None


def check_entry(project: Project, model: str) -> None:
    """Parse a custom entry's source, arch and eval, so that a malformed one fails before
    any work starts (a factory that does not import fails later, in its own baseline)."""
    if project.kind(model) == "custom":
        files(project, model)
        model_format(project, model)


def model_format(project: Project, model: str) -> str:
    return custom.format_of(source(project, model)[0], model_spec(project, model).format)


def _suffix(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return name[name.rfind(".") :] if "." in name else ""


def files(project: Project, model: str) -> dict[str, tuple[str, str, str]]:
    """``{role: (uri, sha256, local name under fetch/)}`` of everything the entry reads."""
    uri, digest = source(project, model)
    out = {"model": (uri, digest, "model" + _suffix(uri))}
    for role, (u, d) in eval_spec(project, model).files().items():
        out[role] = (u, d, f"eval/{role}{_suffix(u)}")
    return out


def fetch(project: Project, model: str, out: Path) -> dict[str, Any]:
    """Download (or copy) every file of the entry into ``out`` and verify its sha256."""
    wanted = files(project, model)
    remote = {role: v for role, v in wanted.items() if v[0].startswith("s3://")}
    for _role, (uri, _, name) in wanted.items():
        if uri.startswith("s3://"):
            continue
        src = local_folder(uri)
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out / name)
        else:
            shutil.copyfile(src, out / name)
    if remote:
        with s3io.available(project) as (s3, settings):
            for uri, _, name in remote.values():
                bucket, key = s3io.parse_uri(uri)
                if not uri.endswith("/"):
                    s3io.download_file(s3, settings, bucket, key, out / name)
                    continue
                keys = s3io.list_keys(s3, settings, bucket, key + "/")  # a folder: an image folder
                if not keys:
                    raise FileNotFoundError(f"{uri} holds no objects")
                for k in keys:
                    s3io.download_file(s3, settings, bucket, k, out / name / k[len(key) + 1 :])
    for role, (uri, digest, name) in wanted.items():
        got = sha256_tree(out / name)
        if got != digest:
            raise ValueError(
                f"checksum mismatch for {model} {role} {uri}: catalogue says {digest[:12]}, file is {got[:12]}"
            )
    log.info("fetched %s: %s (sha256 verified)", model, ", ".join(wanted))
    return {"files": {role: {"uri": u, "sha256": d} for role, (u, d, _) in wanted.items()}}


def _local(project: Project, model: str, role: str) -> Path:
    return project.stage_dir(model, "fetch") / files(project, model)[role][2]


# --- examples -----------------------------------------------------------------------------
def _load(project: Project, model: str, role: str) -> Examples:
    spec = model_spec(project, model).input
    path = _local(project, model, role)
    if eval_spec(project, model).task == "text-embedding" and role == "data":
        t1, t2, scores = custom.read_pairs(path)
        return Examples(texts=tuple(t1 + t2), y=scores)  # y: the human scores, pairs stacked
    examples = custom.preprocess(custom.read_raw(path, spec), spec, f"{model}.eval.{role} ({path.name})")
    if role == "data" and eval_spec(project, model).task == "classification" and examples.y is None:
        raise ValueError(
            f"{model}.eval.data ({path.name}) has no labels ('y' array or 'label' column): classification needs labels"
        )
    return examples


def _pairs_take(ex: Examples, idx: np.ndarray) -> Examples:
    assert ex.texts is not None and ex.y is not None
    n = len(ex.y)
    return Examples(texts=tuple(ex.texts[i] for i in idx) + tuple(ex.texts[n + i] for i in idx), y=ex.y[idx])


def _pairs(ev: custom.EvalSpec) -> bool:
    return ev.task == "text-embedding" and ev.data is not None


def _examples_role(ev: custom.EvalSpec) -> str:
    """The file evaluated (and split for calibration): the data, or a text probe on its own."""
    return "data" if ev.data is not None else "probe"


def make_split(project: Project, model: str) -> dict[str, Any]:
    """The evaluation/calibration split, recorded in ``baseline/split.json``."""
    ev = eval_spec(project, model)
    if ev.data is None and ev.probe is None:
        return {"synthetic": True, "samples": ev.samples, "note": "no data: examples drawn from the input spec"}
    if ev.calibration is not None:
        return {"calibration_file": ev.calibration_sha256}
    data = _load(project, model, _examples_role(ev))
    n = len(data.y) if _pairs(ev) and data.y is not None else len(data)
    eval_idx, calib_idx = custom.split(n, ev.calibration_split, project.seed)
    return {
        "n": n,
        "calibration_split": ev.calibration_split,
        "seed": project.seed,
        "eval": eval_idx.tolist(),
        "calibration": calib_idx.tolist(),
        "sha256": sha256_json({"eval": eval_idx.tolist(), "calibration": calib_idx.tolist()}),
    }


def examples(project: Project, model: str, part: str) -> Examples:
    """The ``part`` ("eval" or "calibration") examples, preprocessed, as split in baseline."""
    ev = eval_spec(project, model)
    spec = model_spec(project, model).input
    split = json.loads((project.stage_dir(model, "baseline") / SPLIT).read_text())
    if split.get("synthetic"):
        return custom.synthetic(spec, ev.samples, project.seed + (part == "calibration"))
    if "calibration_file" in split:
        return _load(project, model, _examples_role(ev) if part == "eval" else "calibration")
    data = _load(project, model, _examples_role(ev))
    idx = np.asarray(split[part], dtype=np.int64)
    return _pairs_take(data, idx) if _pairs(ev) else data.take(idx)


# --- baseline -----------------------------------------------------------------------------
def baseline(project: Project, model: str, out: Path) -> dict[str, Any]:
    """Check the model and data against the spec, then write ``model.onnx`` (+ torch weights)."""
    spec, fmt = model_spec(project, model), model_format(project, model)
    src = _local(project, model, "model")
    if fmt == "safetensors" and spec.factory is None:
        raise ValueError(f"{model}.arch.factory is required for safetensors weights ('package.module:function')")
    if fmt != "safetensors" and spec.factory is not None:
        raise ValueError(f"{model}.arch.factory applies to safetensors weights only; {src.name} is {fmt}")
    split = make_split(project, model)  # reads the data: a data/spec mismatch fails here
    if fmt == "onnx":
        custom.check_onnx_inputs(src, spec.input)
        shutil.copyfile(src, out / "model.onnx")
    else:
        tm = custom.load_torch(src, spec, fmt)
        custom.check_torch_inputs(tm, spec.input)
        shutil.copyfile(src, out / f"model.{'pt' if fmt == 'torchscript' else fmt}")
        custom.export(tm, spec, out / "model.onnx")
        custom.check_onnx_inputs(out / "model.onnx", spec.input)
    (out / SPLIT).write_text(json.dumps(split, sort_keys=True) + "\n")
    summary = {"format": fmt, "task": eval_spec(project, model).task, "inputs": spec.input.name}
    summary.update({k: split[k] for k in ("n", "sha256", "synthetic", "calibration_file") if k in split})
    if "calibration" in split:
        summary["calibration_examples"] = len(split["calibration"])
    return summary


def load_fp32(project: Project, model: str) -> nn.Module | None:
    """The fp32 torch module when the techniques work on torch (safetensors + factory), else None."""
    if model_format(project, model) != "safetensors":
        return None
    return custom.load_torch(
        project.stage_dir(model, "baseline") / "model.safetensors", model_spec(project, model), "safetensors"
    ).module


def export(project: Project, model: str, module: nn.Module, path: Path) -> None:
    custom.export(custom.TorchModel(module, "safetensors"), model_spec(project, model), path)


def calibration_feeds(project: Project, model: str) -> list[dict[str, np.ndarray]]:
    spec = model_spec(project, model).input
    calib = examples(project, model, "calibration")
    if spec.is_text:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(spec.tokenizer))
        wanted = {name for name, _, _ in custom.onnx_inputs(project.artifact(model, "baseline"))}
        feeds = []
        for text in calib.texts or ():
            enc = tok([text], truncation=True, max_length=spec.max_length, return_tensors="np")
            feeds.append({k: np.asarray(v, np.int64) for k, v in enc.items() if k in wanted})
        return feeds
    assert calib.x is not None
    return [{spec.name: calib.x[i : i + 32]} for i in range(0, len(calib.x), 32)]


def skip_reason(project: Project, model: str, technique: str) -> str | None:
    return custom.skip_reason(technique, model_format(project, model), eval_spec(project, model).task)


def distill(project: Project, model: str) -> tuple[nn.Module, list[float]]:
    """A student from the same factory with ``distill.student_args``, KD on the calibration split."""
    cfg = project.config(model, "distill")
    assert isinstance(cfg, StudentDistillConfig)
    teacher = load_fp32(project, model)
    assert teacher is not None
    spec = model_spec(project, model)
    student = custom.build_from_factory(spec, **cfg.student_args)
    calib = examples(project, model, "calibration")
    assert calib.x is not None
    y = calib.y if eval_spec(project, model).task == "classification" else None
    return student, distill_into(student, teacher, calib.x, y, cfg)


# --- evaluation ---------------------------------------------------------------------------
def quality(project: Project, model: str) -> list[str]:
    ev = eval_spec(project, model)
    return custom.quality_metrics(ev.task, ev.top_k, ev.probe is not None, ev.data is not None)


def evaluator(project: Project, model: str) -> Any:
    """``evaluate(path, reference) -> (metrics, outputs)`` for ``model``'s artifacts; the
    eval examples (and a probe file) are read and preprocessed once, not per artifact."""
    ev, spec = eval_spec(project, model), model_spec(project, model).input
    data = examples(project, model, "eval")
    probe = _load(project, model, "probe") if ev.task == "text-embedding" and ev.data is not None and ev.probe else None

    def evaluate(path: Path, reference: np.ndarray | None) -> tuple[dict[str, float], np.ndarray]:
        if ev.task == "text-embedding":
            outputs = custom.run_text(path, spec, list(data.texts or ()), project.threads, ev.batch_size)
            probe_emb = probe_labels = None
            if ev.data is None:  # the probe file alone: its evaluation part is what was embedded
                probe_emb, probe_labels = outputs, data.y
            elif probe is not None:
                probe_emb = custom.run_text(path, spec, list(probe.texts or ()), project.threads, ev.batch_size)
                probe_labels = probe.y
            extra = (data.y if ev.data is not None else None, probe_emb, probe_labels)
        else:
            assert data.x is not None
            outputs, extra = custom.run_tensor(path, spec, data.x, project.threads, ev.batch_size), None
        return custom.score(ev.task, outputs, data, reference, ev, extra), outputs

    return evaluate
