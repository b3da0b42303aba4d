"""Kind ``custom``: a team's own model and evaluation data, as a catalogue entry, no code.

The smallest entry (docs/own-model.md)::

    kind: custom
    source: {uri: s3://zoo/digits/model.onnx, sha256: 3f1a...}   # a path, file:// or s3://
    arch:   {input: {name: pixels, shape: [64], mean: 0, std: 16}}
    eval:   {task: classification, data: s3://zoo/digits/test.npz, sha256: 9b2c...}
    tolerance: {accuracy: 0.01}

Every other section takes its default from ``defaults:`` in params.yaml. ``fetch``
downloads the model and eval files and checks every sha256; ``baseline`` checks the model
against the declared inputs and the data against the declared shape before any compute,
and records the evaluation/calibration split. ONNX files, TorchScript and ``.pt2``
programs are pruned and factorized on their ONNX graph; safetensors with a factory on
torch. Quality is scored for the entry's task (``model_compression/byo/evaluate.py``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from model_compression.byo import data as byo_data
from model_compression.byo.spec import EvalSpec, ModelSpec, format_of
from model_compression.config import from_dict
from model_compression.hashing import sha256_json, sha256_tree
from tasks.kinds.base import DataCheck, Evaluate, FileRef, Kind, capability, only_test

if TYPE_CHECKING:
    from torch import nn

    from tasks.core.project import Project

SPLIT = "split.json"
_NO_STUDENT = "distillation needs a student architecture: give safetensors weights with arch.factory"


def _suffix(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return name[name.rfind(".") :] if "." in name else ""


class Custom(Kind):
    name = "custom"
    baseline_sections = ("arch", "eval")  # the split is made from the eval section
    distill_config = "model_compression.distill.logits:StudentDistillConfig"
    default_eval: ClassVar[dict[str, Any] | None] = None  # required: the task and its data

    # -- the entry ----------------------------------------------------------------------
    def model_spec(self, project: Project, model: str) -> ModelSpec:
        arch = project.entry(model).get("arch")
        if not isinstance(arch, dict):
            raise ValueError(f"{model}.arch must describe the model: format, input (and factory for safetensors)")
        return from_dict(ModelSpec, arch, f"{model}.arch")

    def eval_spec(self, project: Project, model: str) -> EvalSpec:
        values = project.entry(model).get("eval")
        if not isinstance(values, dict):
            raise ValueError(f"{model}.eval must give the task and its data (see docs/own-model.md)")
        return from_dict(EvalSpec, values, f"{model}.eval")

    def source_file(self, project: Project, model: str) -> tuple[str, str]:
        """``(uri, sha256)`` of the model file."""
        src = project.entry(model).get("source")
        if not isinstance(src, dict) or set(src) != {"uri", "sha256"}:
            raise ValueError(f"{model}.source must be {{uri: <path or s3://...>, sha256: <hex>}} for a custom model")
        if not isinstance(src["sha256"], str) or len(src["sha256"]) != 64:
            raise ValueError(f"{model}.source.sha256 must be 64 hex digits, got {src['sha256']!r}")
        return str(src["uri"]), src["sha256"]

    def model_format(self, project: Project, model: str) -> str:
        return format_of(self.source_file(project, model)[0], self.model_spec(project, model).format)

    def check(self, project: Project, model: str) -> None:
        self.files(project, model)
        self.model_format(project, model)

    def source(self, project: Project, model: str) -> str:
        return self.source_file(project, model)[0]

    def files(self, project: Project, model: str) -> list[FileRef]:
        uri, digest = self.source_file(project, model)
        out = [FileRef("model", uri, digest, "model" + _suffix(uri))]
        for role, (u, d) in self.eval_spec(project, model).files().items():
            out.append(FileRef(role, u, d, f"eval/{role}{_suffix(u)}"))
        return out

    def local(self, project: Project, model: str, role: str) -> Path:
        ref = next(f for f in self.files(project, model) if f.role == role)
        return project.stage_dir(model, "fetch") / ref.local

    def baseline_inputs(self, project: Project, model: str) -> dict[str, Path]:
        """The factory's source file, if any: the team's model code; a change rebuilds the baseline."""
        factory = self.model_spec(project, model).factory
        if factory is None:
            return {}
        try:
            spec = importlib.util.find_spec(factory.partition(":")[0])
        except (ImportError, ValueError):
            return {}  # the baseline stage names the import error
        return {"factory": Path(spec.origin)} if spec is not None and spec.origin else {}

    def data_inputs(self, project: Project, model: str) -> dict[str, Path]:
        return {"data": project.stage_dir(model, "fetch"), "split": project.stage_dir(model, "baseline") / SPLIT}

    def quality_columns(self, project: Project, model: str) -> list[str]:
        ev = self.eval_spec(project, model)
        if ev.task == "classification":
            return ["accuracy", f"top{ev.top_k}_accuracy", "agreement_to_fp32"]
        if ev.task == "agreement":
            return ["top1_agreement", f"top{ev.top_k}_agreement"]
        pairs, probe = ev.data is not None, ev.probe is not None
        return [*(["pairs_spearman"] if pairs else []), *(["probe_accuracy"] if probe else []), "cosine_to_fp32"]

    def embeds(self, project: Project, model: str) -> bool:
        return self.eval_spec(project, model).task == "text-embedding"

    def skip_reason(self, project: Project, model: str, technique: str) -> str | None:
        if technique == "recipe":
            return "recipes run on the catalogue kinds (text-encoder, image-classifier); a custom model uses the stages"
        if technique != "distill":
            return None
        fmt, task = self.model_format(project, model), self.eval_spec(project, model).task
        why = {
            "onnx": "an ONNX file cannot be fine-tuned",
            "torchscript": "a TorchScript archive fixes its own architecture",
            "pt2": "a torch.export program cannot be put in training mode",
        }
        if fmt in why:
            return f"{_NO_STUDENT}; {why[fmt]}"
        if task == "text-embedding":
            return "distillation of custom text encoders is not built yet (hidden-state KD needs the encoder's layers)"
        return None

    def lineage(self, project: Project, model: str) -> dict[str, Any]:
        return {
            "input_model_sha256": sha256_tree(project.stage_dir(model, "fetch")),
            "data_sha256": {f.role: f.sha256 for f in self.files(project, model) if f.role != "model"},
        }

    # -- examples -------------------------------------------------------------------------
    def _read(self, project: Project, model: str, role: str) -> byo_data.Examples:
        spec, ev = self.model_spec(project, model).input, self.eval_spec(project, model)
        path = self.local(project, model, role)
        if ev.task == "text-embedding" and role == "data":
            t1, t2, scores = byo_data.read_pairs(path)
            return byo_data.Examples(texts=tuple(t1 + t2), y=scores)  # y: the human scores, pairs stacked
        examples = byo_data.preprocess(byo_data.read_raw(path, spec), spec, f"{model}.eval.{role} ({path.name})")
        if role == "data" and ev.task == "classification" and examples.y is None:
            raise ValueError(
                f"{model}.eval.data ({path.name}) has no labels ('y' array or 'label' column): "
                "classification needs labels"
            )
        return examples

    @staticmethod
    def _pairs(ev: EvalSpec) -> bool:
        return ev.task == "text-embedding" and ev.data is not None

    @staticmethod
    def _role(ev: EvalSpec) -> str:
        """The file evaluated (and split for calibration): the data, or a text probe on its own."""
        return "data" if ev.data is not None else "probe"

    def make_split(self, project: Project, model: str) -> dict[str, Any]:
        """The evaluation/calibration split, recorded in ``baseline/split.json``."""
        ev = self.eval_spec(project, model)
        if ev.data is None and ev.probe is None:
            return {"synthetic": True, "samples": ev.samples, "note": "no data: examples drawn from the input spec"}
        if ev.calibration is not None:
            return {"calibration_file": ev.calibration_sha256}
        data = self._read(project, model, self._role(ev))
        n = len(data.y) if self._pairs(ev) and data.y is not None else len(data)
        eval_idx, calib_idx = byo_data.split(n, ev.calibration_split, project.seed)
        return {
            "n": n,
            "calibration_split": ev.calibration_split,
            "seed": project.seed,
            "eval": eval_idx.tolist(),
            "calibration": calib_idx.tolist(),
            "sha256": sha256_json({"eval": eval_idx.tolist(), "calibration": calib_idx.tolist()}),
        }

    def examples(self, project: Project, model: str, part: str) -> byo_data.Examples:
        """The ``part`` ("eval" or "calibration") examples, preprocessed, as split in baseline."""
        ev, spec = self.eval_spec(project, model), self.model_spec(project, model).input
        recorded = json.loads((project.stage_dir(model, "baseline") / SPLIT).read_text())
        if recorded.get("synthetic"):
            return byo_data.synthetic(spec, ev.samples, project.seed + (part == "calibration"))
        if "calibration_file" in recorded:
            return self._read(project, model, self._role(ev) if part == "eval" else "calibration")
        data = self._read(project, model, self._role(ev))
        idx = np.asarray(recorded[part], dtype=np.int64)
        if not self._pairs(ev):
            return data.take(idx)
        assert data.texts is not None and data.y is not None
        n = len(data.y)
        texts = tuple(data.texts[i] for i in idx) + tuple(data.texts[n + i] for i in idx)
        return byo_data.Examples(texts=texts, y=data.y[idx])

    # -- capabilities -------------------------------------------------------------------
    @capability("evaluate")
    def eval_data_check(self, project: Project, model: str) -> DataCheck:
        ev = self.eval_spec(project, model)
        return DataCheck("check_custom_eval_data", {"examples": self.examples(project, model, "eval"), "task": ev.task})

    @capability("baseline")
    def build_baseline(self, project: Project, model: str, out: Path) -> dict[str, Any]:
        """Check the model and data against the spec, then write ``model.onnx`` (+ torch weights)."""
        from model_compression.byo import load as byo_load

        spec, fmt = self.model_spec(project, model), self.model_format(project, model)
        src = self.local(project, model, "model")
        if fmt == "safetensors" and spec.factory is None:
            raise ValueError(f"{model}.arch.factory is required for safetensors weights ('package.module:function')")
        if fmt != "safetensors" and spec.factory is not None:
            raise ValueError(f"{model}.arch.factory applies to safetensors weights only; {src.name} is {fmt}")
        split = self.make_split(project, model)  # reads the data: a data/spec mismatch fails here
        if fmt == "onnx":
            byo_load.check_onnx_inputs(src, spec.input)
            shutil.copyfile(src, out / "model.onnx")
        else:
            tm = byo_load.load_torch(src, spec, fmt)
            byo_load.check_torch_inputs(tm, spec.input)
            shutil.copyfile(src, out / f"model.{'pt' if fmt == 'torchscript' else fmt}")
            byo_load.export(tm, spec, out / "model.onnx")
            byo_load.check_onnx_inputs(out / "model.onnx", spec.input)
        (out / SPLIT).write_text(json.dumps(split, sort_keys=True) + "\n")
        summary: dict[str, Any] = {
            "format": fmt,
            "task": self.eval_spec(project, model).task,
            "inputs": spec.input.name,
        }
        summary.update({k: split[k] for k in ("n", "sha256", "synthetic", "calibration_file") if k in split})
        if "calibration" in split:
            summary["calibration_examples"] = len(split["calibration"])
        return summary

    @capability("load")
    def load(self, project: Project, model: str) -> nn.Module | None:
        """The fp32 torch module when the techniques work on torch (safetensors + factory), else None."""
        from model_compression.byo.load import load_torch

        if self.model_format(project, model) != "safetensors":
            return None
        folder = project.stage_dir(model, "baseline")
        return load_torch(folder / "model.safetensors", self.model_spec(project, model), "safetensors").module

    @capability("export")
    def export(self, project: Project, model: str, module: nn.Module, path: Path) -> None:
        from model_compression.byo.load import TorchModel, export

        export(TorchModel(module, "safetensors"), self.model_spec(project, model), path)

    @capability("calibration")
    def calibration(self, project: Project, model: str) -> list[dict[str, np.ndarray]]:
        from model_compression.byo.load import onnx_inputs

        spec = self.model_spec(project, model).input
        calib = self.examples(project, model, "calibration")
        if not spec.is_text:
            assert calib.x is not None
            return [{spec.name: calib.x[i : i + 32]} for i in range(0, len(calib.x), 32)]
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(spec.tokenizer))
        wanted = {name for name, _, _ in onnx_inputs(project.artifact(model, "baseline"))}
        feeds = []
        for text in calib.texts or ():
            enc = tok([text], truncation=True, max_length=spec.max_length, return_tensors="np")
            feeds.append({k: np.asarray(v, np.int64) for k, v in enc.items() if k in wanted})
        return feeds

    @capability("evaluate")
    def evaluator(self, project: Project, model: str, split: str = "test") -> Evaluate:
        only_test(self.name, split)
        """The eval examples (and a probe file) are read and preprocessed once, not per artifact."""
        from model_compression.byo import evaluate as byo_eval

        ev, spec, threads = self.eval_spec(project, model), self.model_spec(project, model).input, project.threads
        data = self.examples(project, model, "eval")
        probe = self._read(project, model, "probe") if self._pairs(ev) and ev.probe else None

        def evaluate(path: Path, reference: np.ndarray | None) -> Any:
            if ev.task != "text-embedding":
                assert data.x is not None
                outputs = byo_eval.run_tensor(path, spec, data.x, threads, ev.batch_size)
                return byo_eval.score(ev.task, outputs, data, reference, ev)
            outputs = byo_eval.run_text(path, spec, list(data.texts or ()), threads, ev.batch_size)
            probe_emb = probe_labels = None
            if ev.data is None:  # the probe file alone: its evaluation part is what was embedded
                probe_emb, probe_labels = outputs, data.y
            elif probe is not None:
                probe_emb = byo_eval.run_text(path, spec, list(probe.texts or ()), threads, ev.batch_size)
                probe_labels = probe.y
            extra = (data.y if ev.data is not None else None, probe_emb, probe_labels)
            return byo_eval.score(ev.task, outputs, data, reference, ev, extra)

        return evaluate

    @capability("distill")
    def distill(self, project: Project, model: str, teacher: nn.Module) -> tuple[nn.Module, list[float]]:
        """A student from the same factory with ``distill.student_args``, KD on the calibration split."""
        from model_compression.byo.load import build_from_factory
        from model_compression.distill.logits import distill_into

        cfg = self.distill_settings(project, model)
        student = build_from_factory(self.model_spec(project, model), **cfg.student_args)
        calib = self.examples(project, model, "calibration")
        assert calib.x is not None
        y = calib.y if self.eval_spec(project, model).task == "classification" else None
        return student, distill_into(student, teacher, calib.x, y, cfg)
