"""Kind ``image-classifier``: a CNN trained by the pipeline itself on the fetched dataset
(the catalogue's Fashion-MNIST CNN).

The baseline stage trains it, deterministically from the seed in params.yaml. Quality is
``model_compression/evaluate/images.py``: accuracy on the official test split, top-1
agreement with fp32, and the labels' code length. ``eval.validation`` of the training
images is the validation split, which the pipeline's choices are made on; training,
fine-tuning and calibration read the rest only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from model_compression.config import from_dict
from model_compression.hashing import sha256_tree
from model_compression.kinds.image_classifier import ImageEvalConfig
from model_compression.models.fashion_cnn import CNNConfig, TrainConfig
from tasks.kinds.base import DataCheck, Evaluate, Kind, capability

if TYPE_CHECKING:
    from torch import nn

    from tasks.core.project import Project


class ImageClassifier(Kind):
    name = "image-classifier"
    recipe_steps = frozenset(
        {"prune_channels", "prune", "prune_sensitive", "factorize", "finetune", "kmeans", "kmeans_sensitive", "int8",
         "int4", "codebook"}
    )  # fmt: skip
    baseline_sections = ("arch", "train", "eval")  # eval.validation is held out of the training set
    distill_config = "model_compression.distill.logits:LogitDistillConfig"
    default_eval: ClassVar[dict[str, Any] | None] = {}  # every field of ImageEvalConfig has a default

    def eval_config(self, project: Project, model: str) -> ImageEvalConfig:
        return from_dict(ImageEvalConfig, self.eval_settings(project, model), f"{model}.eval")

    def arch(self, project: Project, model: str) -> CNNConfig:
        return from_dict(CNNConfig, project.section(model, "arch") or {}, f"{model}.arch")

    def train_config(self, project: Project, model: str) -> TrainConfig:
        values = {"seed": project.seed, **(project.section(model, "train") or {})}
        return from_dict(TrainConfig, values, f"{model}.train")

    def check(self, project: Project, model: str) -> None:
        self.eval_config(project, model)
        self.arch(project, model)
        self.train_config(project, model)

    def quality_columns(self, project: Project, model: str) -> list[str]:
        return ["accuracy", "agreement_to_fp32"]

    def lineage(self, project: Project, model: str) -> dict[str, Any]:
        # the model is trained here: its input is the trained baseline, its data the dataset
        return {
            "input_model_sha256": sha256_tree(project.stage_dir(model, "baseline")),
            "data_sha256": {"fashion-mnist": sha256_tree(project.stage_dir(model, "fetch"))},
        }

    @capability("evaluate")
    def eval_data_check(self, project: Project, model: str) -> DataCheck:
        from model_compression.datasets import fashion_mnist as fm

        x, y = fm.load_split(project.stage_dir(model, "fetch"), "test")
        mean = float(fm.normalize(x[:1000]).mean())
        return DataCheck("check_image_eval_data", {"labels": y.tolist(), "pixel_mean": mean})

    @capability("baseline")
    def build_baseline(self, project: Project, model: str, out: Path) -> dict[str, Any]:
        import os

        from model_compression.kinds import image_classifier
        from model_compression.layers import n_params

        src = project.stage_dir(model, "fetch")
        arch, train = self.arch(project, model), self.train_config(project, model)
        validation = self.eval_config(project, model).validation
        cnn, losses = image_classifier.build_baseline(src, out, arch, train, validation)
        return {"parameters": n_params(cnn), "train_loss": losses, "onnx_bytes": os.path.getsize(out / "model.onnx")}

    @capability("load")
    def load(self, project: Project, model: str) -> nn.Module:
        from model_compression.kinds import image_classifier

        return image_classifier.load(project.stage_dir(model, "baseline"))

    @capability("export")
    def export(self, project: Project, model: str, module: nn.Module, path: Path) -> None:
        from model_compression.kinds import image_classifier

        image_classifier.export(module, path)

    @capability("calibration")
    def calibration(self, project: Project, model: str) -> list[dict[str, np.ndarray]]:
        from model_compression.kinds import image_classifier

        n = self.eval_config(project, model).calibration
        return image_classifier.calibration_feeds(project.stage_dir(model, "fetch"), n)

    def selection_split(self, project: Project, model: str) -> str:
        return "validation" if self.eval_config(project, model).validation > 0 else "test"

    @capability("evaluate")
    def evaluator(self, project: Project, model: str, split: str = "test") -> Evaluate:
        from model_compression.evaluate import images

        cfg, data, threads = self.eval_config(project, model), project.stage_dir(model, "fetch"), project.threads
        return lambda path, reference: images.evaluate(path, data, threads, reference, cfg.limit, split, cfg.validation)

    @capability("distill")
    def distill(self, project: Project, model: str, teacher: nn.Module) -> tuple[nn.Module, list[float]]:
        from model_compression.distill import logits
        from model_compression.kinds import image_classifier

        validation = self.eval_config(project, model).validation
        x, y = image_classifier.train_data(project.stage_dir(model, "fetch"), validation)
        return logits.distill(teacher, x, y, self.distill_settings(project, model))

    @capability("finetune")
    def finetune(self, project: Project, model: str, net: nn.Module, teacher: nn.Module, cfg: Any) -> list[float]:
        from model_compression.distill.finetune import finetune_classifier
        from model_compression.kinds import image_classifier

        validation = self.eval_config(project, model).validation
        x, y = image_classifier.train_data(project.stage_dir(model, "fetch"), validation)
        return finetune_classifier(net, teacher, x, y, cfg, project.seed)
