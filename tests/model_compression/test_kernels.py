"""The kernel profile: its timing graphs, how graph nodes map to op classes, and the
decisions it drives, which must be a pure function of the profile (no timing at build)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from model_compression.quantize.kernels import (
    CLASSES,
    DEFAULT_FORMAT,
    FORMATS,
    KernelProfileConfig,
    chain,
    choose,
    fmt_fields,
    measure,
    node_classes,
)


def _profile(dw_island: float = 1.0, fmt_speed: dict[str, float] | None = None, gemm: float = 1.5) -> dict:
    speeds = fmt_speed or dict.fromkeys(FORMATS, 1.5)
    conv = {"speedup": {f: {"1": s} for f, s in speeds.items()}, "float_island_speedup": {"1": 1.0}}
    classes = {k: {**conv, "float_island_speedup": {"1": 1.0}} for k in ("conv_pointwise", "conv_dense")}
    classes["conv_depthwise"] = {**conv, "float_island_speedup": {"1": dw_island}}
    classes["matmul"] = {"speedup": {f: {"1": s} for f, s in speeds.items()}}
    classes["gemm"] = {"speedup": {f: {"1": gemm} for f in FORMATS}}
    return {"version": 1, "machine": {"cpu": "test"}, "classes": classes}


@pytest.mark.parametrize("kind", CLASSES)
def test_each_timing_chain_holds_three_ops_of_its_class(kind: str):
    model, shape, middle = chain(kind)
    onnx.checker.check_model(model)
    assert sorted(set(node_classes(model).values())) == [kind] and len(node_classes(model)) == 3
    assert middle == [] and len(shape) in (1, 2, 3)


def test_the_context_chain_puts_the_class_between_pointwise_convs():
    model, _, middle = chain("conv_depthwise", middle_float=True)
    assert list(node_classes(model).values()) == ["conv_pointwise", "conv_depthwise", "conv_pointwise"]
    assert middle == ["l1"]


def test_a_float_island_faster_than_int8_keeps_that_class_in_float():
    model, _, _ = chain("conv_depthwise", middle_float=True)
    decided = choose(_profile(dw_island=1.4), model)
    assert decided["float_nodes"] == ["l1"] and "1.40x faster" in decided["float_classes"]["conv_depthwise"]
    assert choose(_profile(dw_island=1.05), model)["float_nodes"] == []  # within the noise: int8 stays


def test_the_default_format_stays_unless_another_is_faster_beyond_the_noise():
    model, _, _ = chain("matmul")
    near = {"qdq_u8s8": 1.5, "qdq_s8s8": 1.6, "qop_u8s8": 1.4}
    assert choose(_profile(fmt_speed=near), model)["format"] == DEFAULT_FORMAT
    far = {"qdq_u8s8": 1.0, "qdq_s8s8": 1.8, "qop_u8s8": 0.9}
    assert choose(_profile(fmt_speed=far), model)["format"] == "qdq_s8s8"


def test_a_slower_int8_class_without_a_context_measurement_stays_in_float():
    model, _, _ = chain("gemm")
    assert choose(_profile(gemm=0.7), model)["float_nodes"] == ["l0", "l1", "l2"]
    assert choose(_profile(gemm=0.95), model)["float_nodes"] == []


def test_the_decision_is_a_pure_function_of_profile_and_graph():
    model, _, _ = chain("conv_depthwise", middle_float=True)
    assert choose(_profile(dw_island=1.3), model) == choose(_profile(dw_island=1.3), model)


def test_a_measured_profile_has_every_format_and_batch(tmp_path: Path):
    cfg = KernelProfileConfig(batches=(1, 2), repeats=1, rounds=1, budget_s=0.002)
    prof = measure(cfg, tmp_path, classes=("conv_depthwise", "gemm"))
    assert set(prof["classes"]) == {"conv_depthwise", "gemm"} and prof["machine"]["cpu"]
    for k in prof["classes"].values():
        assert set(k["speedup"]) == set(FORMATS) and all(set(v) == {"1", "2"} for v in k["speedup"].values())
        assert all(s > 0 for v in k["speedup"].values() for s in v.values())
    assert set(prof["classes"]["conv_depthwise"]["float_island_speedup"]) == {"1", "2"}
    assert "float_island_speedup" not in prof["classes"]["gemm"]


def test_formats_map_to_quantizer_fields():
    assert fmt_fields("qop_u8s8") == ("qoperator", "uint8") and fmt_fields("qdq_s8s8") == ("qdq", "int8")
    with pytest.raises(ValueError, match="unknown int8 format 'fp16'"):
        fmt_fields("fp16")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batches": ()}, "batches must be positive"),
        ({"repeats": 0}, "repeats and rounds must be >= 1"),
        ({"budget_s": 0}, "budget_s must be > 0 s"),
    ],
)
def test_bad_profile_settings_name_the_field(kwargs: dict, match: str):
    with pytest.raises(ValueError, match=match):
        KernelProfileConfig(**kwargs)
