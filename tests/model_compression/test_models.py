"""Tiny text encoder and CNN: export parity, layer-drop students, distillation, training."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from model_compression.datasets import fashion_mnist as fm
from model_compression.kinds import text_encoder
from model_compression.models.fashion_cnn import CNNConfig, FashionCNN, TrainConfig, train
from model_compression.models.text_encoder import layer_drop_student, load_encoder, tokenize
from model_compression.runtime.session import make_session

SENTENCES = [f"sentence number {i} talks about {w}" for i, w in enumerate(["fires", "cricket", "rain", "markets"] * 8)]


def test_encoder_onnx_matches_torch(tiny_bert_dir: Path, tmp_path: Path):
    model, tok = load_encoder(tiny_bert_dir)
    path = text_encoder.export(model, tok, tmp_path / "m.onnx")
    feeds = tokenize(tok, SENTENCES[:5], 32)
    ref = model(**feeds).detach().numpy()
    got = make_session(path).run(None, {k: v.numpy() for k, v in feeds.items()})[0]
    cos = (ref * got).sum(1)
    assert cos.min() > 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_layer_drop_student_keeps_chosen_layers(tiny_bert_dir: Path):
    teacher, _ = load_encoder(tiny_bert_dir)
    student = layer_drop_student(teacher, [1])
    assert len(student.encoder.encoder.layer) == 1
    torch.testing.assert_close(
        student.encoder.encoder.layer[0].output.dense.weight, teacher.encoder.encoder.layer[1].output.dense.weight
    )
    per_layer = sum(p.numel() for p in teacher.encoder.encoder.layer[0].parameters())
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(teacher) - n(student) == per_layer
    with pytest.raises(ValueError, match="must be indices"):
        layer_drop_student(teacher, [5])


def test_missing_safetensors_is_refused(tmp_path: Path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="refusing pickle checkpoints"):
        load_encoder(tmp_path)


def test_cnn_default_is_the_documented_baseline():
    assert sum(p.numel() for p in FashionCNN().parameters()) == 421_642


def test_cnn_training_learns_and_is_deterministic(tiny_fmnist_dir: Path):
    x, y = fm.load_split(tiny_fmnist_dir, "train")
    xn = fm.normalize(x)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = FashionCNN(CNNConfig(channels=(4, 8), hidden=16))
        losses = train(model, xn, y, TrainConfig(epochs=2, batch_size=64, lr=3e-3))
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0][1] < runs[0][0][0]
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        assert torch.equal(a, b)


def test_a_cosine_schedule_decays_the_learning_rate_to_near_zero(tiny_fmnist_dir: Path, monkeypatch):
    x, y = fm.load_split(tiny_fmnist_dir, "train")
    seen: list[float] = []
    step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    model = FashionCNN(CNNConfig(channels=(4, 8), hidden=16))
    train(model, fm.normalize(x), y, TrainConfig(epochs=2, batch_size=64, lr=1e-3, schedule="cosine"))
    assert seen[0] == 1e-3 and all(a > b for a, b in itertools.pairwise(seen))
    assert seen[-1] < 1e-3 * 0.01 and seen[len(seen) // 2] == pytest.approx(5e-4, rel=0.05)
    with pytest.raises(ValueError, match=r"schedule must be one of \['constant', 'cosine'\], got 'step'"):
        TrainConfig(schedule="step")


def test_corrupt_idx_file_is_a_clear_error(tmp_path: Path):
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b\x08\x00truncated")
    with pytest.raises(ValueError, match="corrupt idx file"):
        fm.read_idx(tmp_path / "bad.gz")


def test_the_validation_split_is_the_training_files_tail_and_never_trained_on(tiny_fmnist_dir: Path):
    full, labels = fm.load_split(tiny_fmnist_dir, "train")
    train_x, train_y = fm.load_split(tiny_fmnist_dir, "train", validation=0.1)
    val_x, val_y = fm.load_split(tiny_fmnist_dir, "validation", validation=0.1)
    assert (len(train_x), len(val_x)) == (1800, 200)  # 10 % of the fixture's 2,000 training images
    assert np.array_equal(np.concatenate([train_x, val_x]), full) and np.array_equal(
        np.concatenate([train_y, val_y]), labels
    )
    test_x, _ = fm.load_split(tiny_fmnist_dir, "test", validation=0.1)
    assert len(test_x) == 500  # the test split is never cut
    with pytest.raises(ValueError, match=r"no validation split: validation=0.0 of 2000 training images"):
        fm.load_split(tiny_fmnist_dir, "validation")
    with pytest.raises(ValueError, match=r"validation must be a fraction in \[0, 0.5\], got 0.9"):
        fm.load_split(tiny_fmnist_dir, "train", validation=0.9)
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'validation', 'test'\), got 'dev'"):
        fm.load_split(tiny_fmnist_dir, "dev")
