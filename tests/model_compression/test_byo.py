"""The bring-your-own-model library: specs, data files, preprocessing, split, scores."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_compression.byo import data as byo_data
from model_compression.byo.evaluate import kl_nats, score
from model_compression.byo.spec import EvalSpec, InputSpec, ModelSpec, format_of
from model_compression.registry import from_dict

SHA = "a" * 64


def test_spec_errors_name_the_field():
    with pytest.raises(ValueError, match=r"InputSpec.shape is required"):
        InputSpec()
    with pytest.raises(ValueError, match=r"InputSpec.dtype must be one of"):
        InputSpec(shape=(4,), dtype="complex64")
    with pytest.raises(ValueError, match=r"InputSpec.std must not be 0"):
        InputSpec(shape=(4,), std=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"eval.task must be one of"):
        EvalSpec(task="regression", data="x.npz", sha256=SHA)
    with pytest.raises(ValueError, match=r"text-embedding needs eval.data \(similarity pairs\), eval.probe"):
        EvalSpec(task="text-embedding")
    with pytest.raises(ValueError, match=r"eval.data is required for task 'classification'"):
        EvalSpec(task="classification")
    with pytest.raises(ValueError, match=r"eval.sha256 must be the 64-hex-digit sha256 of 'x.npz'"):
        EvalSpec(task="classification", data="x.npz")
    with pytest.raises(ValueError, match=r"eval.calibration_split must be in \(0, 0.9\]"):
        EvalSpec(task="agreement", calibration_split=0.95)
    with pytest.raises(ValueError, match=r"arch.factory must look like 'package.module:function'"):
        from_dict(ModelSpec, {"input": {"shape": [4]}, "factory": "models.mlp"})
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['layout'\]"):
        from_dict(ModelSpec, {"input": {"shape": [4], "layout": "NHWC"}}, "m.arch")
    assert format_of("s3://b/model.pt2", None) == "pt2" and format_of("w.bin", "safetensors") == "safetensors"
    with pytest.raises(ValueError, match=r"set arch.format"):
        format_of("model.bin", None)


def test_parquet_csv_and_image_folder_are_read_and_normalized(tmp_path: Path):
    from PIL import Image

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (12, 6)).astype(np.float32)
    pd.DataFrame({**{f"f{i}": x[:, i] for i in range(6)}, "label": np.arange(12) % 3}).to_parquet(
        tmp_path / "d.parquet"
    )
    spec = InputSpec(shape=(6,), mean=100.0, std=50.0)
    ex = byo_data.preprocess(byo_data.read_raw(tmp_path / "d.parquet", spec), spec, "test")
    assert ex.x is not None and ex.x.shape == (12, 6) and ex.x.dtype == np.float32
    assert np.allclose(ex.x, (x - 100) / 50) and list(ex.y) == [i % 3 for i in range(12)]

    pd.DataFrame({"text": ["a good film", "a bad film"], "label": [1, 0]}).to_csv(tmp_path / "t.csv", index=False)
    texts = byo_data.read_raw(tmp_path / "t.csv", InputSpec(tokenizer="tok"))
    assert texts.texts == ("a good film", "a bad film") and len(texts) == 2

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((10, 10, 3), 60 * i, np.uint8)).save(folder / f"{i}.png")
    pd.DataFrame({"file": [f"{i}.png" for i in range(4)], "label": [0, 1, 0, 1]}).to_csv(
        folder / "labels.csv", index=False
    )
    rgb = InputSpec(shape=(3, 8, 8), mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    img = byo_data.preprocess(byo_data.read_raw(folder, rgb), rgb, "imgs")
    assert img.x is not None and img.x.shape == (4, 3, 8, 8)  # resized to the declared 8x8
    assert np.allclose(img.x[3, :, 0, 0], [(180 / 255 - 0.5) / s for s in (0.25, 0.5, 1.0)], atol=1e-5)


def test_unreadable_files_and_shape_mismatches_are_named(tmp_path: Path):
    spec = InputSpec(shape=(1, 28, 28))
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(ValueError, match=r"unsupported eval data file d.json"):
        byo_data.read_raw(tmp_path / "d.json", spec)
    np.savez(tmp_path / "d.npz", inputs=np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"has no array 'x' \(found \['inputs'\]\)"):
        byo_data.read_raw(tmp_path / "d.npz", spec)
    np.savez(tmp_path / "e.npz", x=np.zeros((3, 27, 27)))
    with pytest.raises(
        ValueError, match=r"examples have shape \[27, 27\] \(729 values\) but InputSpec.shape is \[1, 28, 28\]"
    ):
        byo_data.preprocess(byo_data.read_raw(tmp_path / "e.npz", spec), spec, "where")
    (tmp_path / "imgs").mkdir()
    with pytest.raises(ValueError, match=r"has no labels.csv"):
        byo_data.read_raw(tmp_path / "imgs", spec)


def test_split_is_seeded_disjoint_and_complete():
    ev, cal = byo_data.split(100, 0.2, seed=3)
    ev2, cal2 = byo_data.split(100, 0.2, seed=3)
    assert np.array_equal(ev, ev2) and np.array_equal(cal, cal2)
    assert len(cal) == 20 and not set(ev) & set(cal) and set(ev) | set(cal) == set(range(100))
    assert not np.array_equal(byo_data.split(100, 0.2, seed=4)[1], cal)
    with pytest.raises(ValueError, match=r"cannot split 1 example"):
        byo_data.split(1, 0.2, seed=0)


def test_scores_for_classification_and_agreement():
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [2.0, 0.0, 1.0]])
    y = np.array([0, 2, 2, 1])
    spec = EvalSpec(task="classification", data="d.npz", sha256=SHA, top_k=2)
    result = score("classification", logits, byo_data.Examples(x=np.zeros((4, 1)), y=y), None, spec)
    m = result.metrics
    assert result.headline == "accuracy" and result.examples == 4
    assert result.statistic is not None and result.statistic(np.arange(4)) == m["accuracy"]
    assert result.statistic(np.array([0, 2])) == 1.0  # the headline over a subset of the examples
    assert m["accuracy"] == 0.5 and m["top2_accuracy"] == 0.75 and m["agreement_to_fp32"] == 1.0
    assert m["nll_bits"] > 0
    with pytest.raises(ValueError, match=r"labels range over \[0, 3\] but the model has 3 outputs"):
        score("classification", logits, byo_data.Examples(x=np.zeros((4, 1)), y=np.array([0, 1, 2, 3])), None, spec)
    other = logits[:, ::-1].copy()
    ag = score(
        "agreement", other, byo_data.Examples(x=np.zeros((4, 1))), logits, EvalSpec(task="agreement", top_k=2)
    ).metrics
    assert (
        ag["top1_agreement"] == 0.25
        and ag["kl_to_fp32"] == pytest.approx(kl_nats(other, logits))
        and ag["kl_to_fp32"] > 0
    )
    assert kl_nats(logits, logits) == pytest.approx(0.0, abs=1e-12)
