"""Kind ``text-encoder``: a BERT-style sentence encoder such as all-MiniLM-L6-v2.

Its weights and tokenizer come from the model zoo; quality is the sentence suite of
``model_compression/evaluate/sentence.py`` (Lee, polarity, WordSim-353, held-out cosine).
Calibration and distillation sentences come from the background corpus before the
held-out tail, so evaluation never sees them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from model_compression.config import from_dict
from model_compression.datasets.text import gensim_datapath
from model_compression.hashing import sha256_file, sha256_tree
from model_compression.kinds.text_encoder import TextEvalConfig
from tasks.kinds.base import DataCheck, Evaluate, Kind, capability, only_test

if TYPE_CHECKING:
    from torch import nn

    from tasks.core.project import Project

TEXT_DATA = ("lee.cor", "similarities0-1.txt", "pang_lee_polarity.cor", "lee_background.cor")


class TextEncoder(Kind):
    name = "text-encoder"
    recipe_steps = frozenset(
        {"prune_transformer", "layer_drop", "prune", "prune_sensitive", "factorize", "finetune", "kmeans",
         "kmeans_sensitive", "int8", "int4", "embed_lowbit", "fuse", "codebook"}
    )  # fmt: skip
    distill_config = "model_compression.distill.embedding:EmbeddingDistillConfig"
    teach_config = "model_compression.distill.teacher_cache:TeacherCacheConfig"
    default_eval: ClassVar[dict[str, Any] | None] = {}  # every field of TextEvalConfig has a default

    def eval_config(self, project: Project, model: str) -> TextEvalConfig:
        return from_dict(TextEvalConfig, self.eval_settings(project, model), f"{model}.eval")

    def check(self, project: Project, model: str) -> None:
        self.eval_config(project, model)

    def skip_reason(self, project: Project, model: str, technique: str) -> str | None:
        if technique == "distill" and project.section(model, "distill") and project.section(model, "teach") is None:
            where = project.param_path(model, "teach") or f"models.{model}.teach"
            return f"distillation trains against the teacher cache, and {where} is null in params.yaml"
        return super().skip_reason(project, model, technique)

    def data_inputs(self, project: Project, model: str) -> dict[str, Path]:
        return {"tokenizer": project.stage_dir(model, "baseline")}  # evaluation data ships with gensim

    def quality_columns(self, project: Project, model: str) -> list[str]:
        return ["lee_pearson", "polarity_accuracy", "wordsim_spearman", "cosine_to_fp32"]

    def embeds(self, project: Project, model: str) -> bool:
        return True

    def lineage(self, project: Project, model: str) -> dict[str, Any]:
        return {
            "input_model_sha256": sha256_tree(project.stage_dir(model, "fetch")),
            "data_sha256": {name: sha256_file(gensim_datapath(name)) for name in TEXT_DATA},
        }

    @capability("evaluate")
    def eval_data_check(self, project: Project, model: str) -> DataCheck:
        from model_compression.datasets import text as text_data

        pol = text_data.load_polarity()
        return DataCheck("check_text_eval_data", {"texts": pol.texts, "labels": pol.labels.tolist()})

    @capability("baseline")
    def build_baseline(self, project: Project, model: str, out: Path) -> dict[str, Any]:
        import os

        from model_compression.kinds import text_encoder
        from model_compression.layers import n_params

        encoder = text_encoder.build_baseline(project.stage_dir(model, "fetch"), out)
        return {"parameters": n_params(encoder), "onnx_bytes": os.path.getsize(out / "model.onnx")}

    @capability("load")
    def load(self, project: Project, model: str) -> nn.Module:
        from model_compression.kinds import text_encoder

        return text_encoder.load(project.stage_dir(model, "baseline"))[0]

    @capability("export")
    def export(self, project: Project, model: str, module: nn.Module, path: Path) -> None:
        from model_compression.kinds import text_encoder

        text_encoder.export(module, text_encoder.tokenizer(project.stage_dir(model, "baseline")), path)

    @capability("calibration")
    def calibration(self, project: Project, model: str) -> list[dict[str, np.ndarray]]:
        from model_compression.kinds import text_encoder

        return text_encoder.calibration_feeds(project.stage_dir(model, "baseline"), self.eval_config(project, model))

    @capability("evaluate")
    def evaluator(self, project: Project, model: str, split: str = "test") -> Evaluate:
        only_test(self.name, split)
        from model_compression.evaluate import sentence

        cfg, folder, threads = self.eval_config(project, model), project.stage_dir(model, "baseline"), project.threads
        return lambda path, reference: sentence.evaluate(path, folder, cfg, threads, reference)

    @capability("teach")
    def teach(self, project: Project, model: str, out: Path) -> dict[str, Any]:
        from model_compression.datasets import text as text_data
        from model_compression.distill import teacher_cache
        from model_compression.kinds import text_encoder

        folder, cfg = project.stage_dir(model, "baseline"), self.eval_config(project, model)
        teacher, tok = text_encoder.load(folder)
        sentences = text_encoder.train_sentences(cfg)
        held = text_data.split_heldout(text_data.background_sentences(), cfg.heldout)[1]
        if set(held) & set(sentences):  # the held-out cosine must measure text the student never saw
            raise ValueError(f"{model}: {len(set(held) & set(sentences))} held-out sentences are in the training text")
        meta = teacher_cache.build(teacher, tok, sentences, out, self.teach_settings(project, model))
        return {**meta, "heldout_sentences": len(held), "heldout_sha256": teacher_cache.corpus_sha256(held)}

    @capability("distill")
    def distill(self, project: Project, model: str, teacher: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
        import dataclasses
        import logging
        import time

        from model_compression.distill import embedding, teacher_cache

        cfg = dataclasses.replace(self.distill_settings(project, model), seed=project.seed)
        cache = teacher_cache.load(project.stage_dir(model, "teach"))
        # beside the stage folders, not in the run's partial folder: a killed run resumes from it
        checkpoint = project.stage_dir(model, "distill").parent / ".checkpoints" / "distill.pt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        log, start = logging.getLogger("pipeline"), time.monotonic()

        def progress(step: int, steps: int, parts: dict[str, float]) -> None:
            if step % cfg.checkpoint_every and step != steps:
                return
            shown = " ".join(f"{k} {v:.4f}" for k, v in parts.items())
            log.info("%s/distill step %d/%d (%d%%, %.0f s): %s", model, step, steps, 100 * step // steps,
                     time.monotonic() - start, shown)  # fmt: skip

        student, history = embedding.distill(teacher, cache, cfg, checkpoint, progress)  # type: ignore[arg-type]
        checkpoint.unlink(missing_ok=True)  # done: the stage's output holds the student
        return student, history

    @capability("token_counts")
    def token_counts(self, project: Project, model: str) -> np.ndarray:
        from model_compression.kinds import text_encoder

        return text_encoder.token_counts(project.stage_dir(model, "baseline"), self.eval_config(project, model))

    @capability("finetune")
    def finetune(self, project: Project, model: str, net: nn.Module, teacher: nn.Module, cfg: Any) -> list[float]:
        from model_compression.distill.finetune import finetune_encoder
        from model_compression.kinds import text_encoder

        tok = text_encoder.tokenizer(project.stage_dir(model, "baseline"))
        sentences = text_encoder.train_sentences(self.eval_config(project, model))
        return finetune_encoder(net, teacher, tok, sentences, cfg, project.seed)
