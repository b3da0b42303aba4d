"""Embedding distillation of the tiny encoder against a teacher cache: it learns, it resumes
bit for bit, and the teacher runs once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_compression.distill import teacher_cache
from model_compression.distill.embedding import EmbeddingDistillConfig, distill, lr_factor
from model_compression.models.text_encoder import load_encoder, tokenize

WORDS = ["fires", "cricket", "rain", "markets", "police", "election", "storm", "court"]
SENTENCES = [f"sentence {i} talks about {w} and {WORDS[(i * 3) % 8]} today" for i, w in enumerate(WORDS * 12)]
CFG = EmbeddingDistillConfig(layers=(0,), steps=12, batch_size=8, lr=2e-3, checkpoint_every=4, validation=16)


@pytest.fixture(scope="module")
def cached(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    teacher, tok = load_encoder(tiny_bert_dir)
    folder = tmp_path_factory.mktemp("teach")
    teacher_cache.build(teacher, tok, SENTENCES, folder, teacher_cache.TeacherCacheConfig(max_length=16))
    return teacher, tok, teacher_cache.load(folder)


def test_the_cache_holds_the_teachers_outputs_ragged(cached):
    teacher, tok, cache = cached
    assert len(cache) == len(SENTENCES) and cache.meta["corpus_sha256"] == teacher_cache.corpus_sha256(SENTENCES)
    batch = cache.batch(np.array([3, 40]))
    feeds = tokenize(tok, [SENTENCES[3], SENTENCES[40]], 16)
    assert torch.equal(batch["input_ids"], feeds["input_ids"]) and torch.equal(batch["attention_mask"],
                                                                                feeds["attention_mask"])  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(batch["embedding"], teacher(**feeds), atol=1e-6, rtol=0)
        states = teacher.encoder(**feeds).last_hidden_state * feeds["attention_mask"].unsqueeze(-1)
    torch.testing.assert_close(batch["hidden"], states, atol=2e-3, rtol=2e-3)  # float16 on disk
    assert cache.hidden is not None and cache.hidden.shape[0] == len(cache.ids)  # one state per real token


def test_distillation_learns_and_reports_the_validation_cosine(cached):
    teacher, _, cache = cached
    _, history = distill(teacher, cache, CFG)
    assert np.mean(history["losses"][-3:]) < np.mean(history["losses"][:3])
    steps = [s for s, _ in history["val_cosine"]]
    assert steps == [4, 8, 12] and history["val_cosine"][-1][1] > history["val_cosine"][0][1] - 0.05


def test_a_killed_run_resumes_to_the_same_bits(cached, tmp_path: Path):
    teacher, _, cache = cached
    whole, whole_history = distill(teacher, cache, CFG)

    class Killed(Exception):
        pass

    def kill_after_8(step: int, steps: int, parts: dict[str, float]) -> None:
        if step == 8:  # the checkpoint of step 8 is on disk
            raise Killed

    with pytest.raises(Killed):
        distill(teacher, cache, CFG, tmp_path / "ckpt.pt", kill_after_8)
    resumed, history = distill(teacher, cache, CFG, tmp_path / "ckpt.pt")
    assert history["resumed_at"] == 8 and history["losses"] == whole_history["losses"]
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_checkpoint_of_other_settings_is_not_resumed(cached, tmp_path: Path):
    teacher, _, cache = cached
    distill(teacher, cache, CFG, tmp_path / "ckpt.pt")
    _, history = distill(teacher, cache, EmbeddingDistillConfig(**{**CFG.__dict__, "lr": 1e-3}), tmp_path / "ckpt.pt")
    assert history["resumed_at"] == 0


def test_the_schedule_warms_up_then_decays_to_zero():
    cfg = EmbeddingDistillConfig(steps=100, warmup=0.1)
    f = [lr_factor(s, cfg) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == 1.0 and f[50] == pytest.approx(0.5556, abs=1e-3) and f[99] < 0.02


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"batch_size": 1}, "batch_size must be >= 2"), ({"warmup": 1.0}, "warmup < 1"), ({"layers": ()}, "at least one")],
)
def test_config_names_the_bad_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmbeddingDistillConfig(**kwargs)


def test_too_small_a_cache_is_named(cached):
    teacher, _, cache = cached
    with pytest.raises(ValueError, match=r"the cache has 96 sentences: too few for batch_size=90"):
        distill(teacher, cache, EmbeddingDistillConfig(layers=(0,), batch_size=90, validation=16))
