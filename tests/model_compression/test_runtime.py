"""Latency measurement: isolated processes, synthetic inputs, speed-up ratios."""

from pathlib import Path

import numpy as np
import pytest

from model_compression.quantize.onnx_int8 import OnnxInt8Config, quantize
from model_compression.runtime.compare import BenchSettings, benchmark_files
from model_compression.runtime.isolated import declared_inputs, measure_isolated, synthetic_feeds
from tests.model_compression.test_quantize import mlp_onnx  # noqa: F401  # fixture


def test_synthetic_feeds_follow_the_declared_inputs():
    inputs = [("input_ids", ["batch", "tokens"], "int64"), ("attention_mask", ["batch", "tokens"], "int64")]
    feeds = synthetic_feeds([*inputs, ("image", ["b", 1, 28, 28], "float")], batch_size=3, seq_len=7)
    assert feeds["input_ids"].shape == (3, 7) and feeds["input_ids"].dtype == np.int64
    assert (feeds["attention_mask"] == 1).all()
    assert feeds["image"].shape == (3, 1, 28, 28) and feeds["image"].dtype == np.float32


def test_isolated_measurement_reports_latency_load_time_and_memory(mlp_onnx: Path):  # noqa: F811
    feeds = synthetic_feeds(declared_inputs(mlp_onnx), 4)
    r = measure_isolated(mlp_onnx, feeds, threads=1, warmup=2, runs=20)
    assert r["runs"] == 20 and r["batch_size"] == 4 and r["threads"] == 1
    assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    assert r["throughput"] == pytest.approx(4e3 / r["p50_ms"])
    assert r["load_ms"] > 0 and r["peak_rss_mb"] > 10 and r["model_rss_mb"] >= 0


def test_a_corrupt_model_fails_with_the_childs_reason(tmp_path: Path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"benchmark of .*bad.onnx failed: .*cannot load ONNX model"):
        measure_isolated(bad, {"x": np.zeros((1, 64), np.float32)})


def test_benchmark_files_compares_every_file_with_fp32_in_one_run(mlp_onnx: Path, tmp_path: Path):  # noqa: F811
    int8 = quantize(mlp_onnx, tmp_path / "q.onnx", OnnxInt8Config())
    cfg = BenchSettings(batch_sizes=(1, 8), runs=10, rounds=3)
    out = benchmark_files({"baseline": mlp_onnx, "quantize": int8}, cfg)
    assert set(out["results"]) == {"baseline", "quantize"} and out["serving_batch"] == 1
    for name in ("baseline", "quantize"):
        for bs in ("1", "8"):
            r = out["results"][name][bs]
            assert len(r["p50_rounds"]) == 3 and r["p50_ms"] == sorted(r["p50_rounds"])[1]  # the median round
            assert r["round_spread"] == pytest.approx((max(r["p50_rounds"]) - min(r["p50_rounds"])) / r["p50_ms"])
            base = out["results"]["baseline"][bs]["p50_rounds"]
            ratios = sorted(b / a for b, a in zip(base, r["p50_rounds"], strict=True))
            assert out["speedup_vs_fp32"][name][bs] == pytest.approx(ratios[1])  # median of in-round ratios
    slower = out["speedup_vs_fp32"]["quantize"]["1"] < 1
    assert out["int8_slower"] == (["quantize"] if slower else [])
    assert out["fingerprint"]["cores"] and out["preset"] in ("arm64", "avx2", "avx512", "avx512_vnni")


def test_probe_without_files_returns_the_fingerprint_only():
    out = benchmark_files({}, BenchSettings())
    assert out["results"] == {} and out["fingerprint"]["onnxruntime"]


def test_impossible_settings_name_the_field():
    with pytest.raises(ValueError, match="batch_sizes must be non-empty"):
        BenchSettings(batch_sizes=())
    with pytest.raises(ValueError, match="runs=0"):
        BenchSettings(runs=0)
    with pytest.raises(ValueError, match="rounds=0"):
        BenchSettings(rounds=0)
    with pytest.raises(ValueError, match="needs the fp32 reference 'baseline'"):
        benchmark_files({"quantize": "x.onnx"}, BenchSettings())


def test_peak_memory_is_the_childs_own_not_the_parents(mlp_onnx: Path):  # noqa: F811
    ballast = np.ones(400 * 2**20 // 8)  # 400 MiB resident in this (parent) process
    r = measure_isolated(mlp_onnx, synthetic_feeds(declared_inputs(mlp_onnx), 1), runs=3)
    assert ballast.sum() > 0
    assert r["peak_rss_mb"] < 300  # onnxruntime + numpy + a tiny MLP, not the parent's 400 MiB ballast
