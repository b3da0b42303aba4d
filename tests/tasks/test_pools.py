"""Pool settings from params, and the int8-slower-than-fp32 publish rule."""

from pathlib import Path

import pytest
import yaml

from tasks.core.project import Project
from tasks.pools import PoolSpec, local_pool, pools, resolve_preset, targets
from tasks.publishing import publishable


def project_with(tmp_path: Path, **params: object) -> Project:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"models": {}, **params}))
    return Project.at(tmp_path)


def test_default_is_this_machine_only(tmp_path: Path):
    p = project_with(tmp_path)
    assert local_pool(p).name == "local" and [t.name for t in targets(p)] == ["local"]


def test_pools_and_targets_from_params(tmp_path: Path):
    p = project_with(
        tmp_path,
        pools={"here": {"work_pool": None}, "cpu-avx2": {"work_pool": "cpu-avx2", "timeout_s": 30}},
        targets=["here", "cpu-avx2"],
    )
    remote = pools(p)["cpu-avx2"]
    assert not remote.inline and remote.deployment_name == "benchmark-onnx/cpu-avx2" and remote.timeout_s == 30
    assert [t.name for t in targets(p)] == ["here", "cpu-avx2"]
    assert [t.name for t in targets(p, ["cpu-avx2"])] == ["cpu-avx2"]
    with pytest.raises(ValueError, match=r"unknown pool\(s\) \['riscv'\]"):
        targets(p, ["riscv"])


@pytest.mark.parametrize(
    ("pools_param", "message"),
    [
        ({"a": {"work_pool": "a"}}, "exactly one pool must have work_pool: null"),
        ({"a": {}, "b": {}}, "exactly one pool must have work_pool: null"),
        ({"a": {"colour": "red"}}, r"pools.a: unknown field\(s\) \['colour'\]"),
        ({"a": {"timeout_s": 0}}, "pools.a.timeout_s must be > 0"),
        ({"a": {"preset": "sse4"}}, "pools.a.preset must be auto or one of"),
        ({"Bad_Name": {}}, "lower-case letters, digits and dashes"),
    ],
)
def test_impossible_pool_settings_name_the_field(tmp_path: Path, pools_param: dict, message: str):
    with pytest.raises(ValueError, match=message):
        pools(project_with(tmp_path, pools=pools_param))


def test_remote_auto_preset_needs_its_fingerprint():
    remote = PoolSpec("arm64", work_pool="arm64")
    with pytest.raises(ValueError, match="its fingerprint is needed"):
        resolve_preset(remote)
    assert resolve_preset(remote, {"machine": "aarch64", "flags": []}) == "arm64"
    assert resolve_preset(PoolSpec("x", preset="avx2"), {"machine": "aarch64"}) == "avx2"  # pinned wins


def _bench(speed: float) -> dict:
    return {
        "serving_batch": 1,
        "int8_slower": ["quantize"] if speed < 1 else [],
        "speedup_vs_fp32": {"baseline": {"1": 1.0}, "quantize": {"1": speed}, "prune": {"1": 0.97}},
    }


ROWS = {"baseline": {"passed": True}, "quantize": {"passed": True}, "prune": {"passed": True}}


def test_int8_slower_than_fp32_is_withheld_from_that_pool_only():
    pool = PoolSpec("cpu-avx2", work_pool="cpu-avx2")
    assert publishable(ROWS, _bench(0.75), pool, "m") == ["prune"]  # a slower fp32 prune is not int8
    assert publishable(ROWS, _bench(1.3), pool, "m") == ["quantize", "prune"]
    lenient = PoolSpec("cpu-avx2", work_pool="cpu-avx2", publish_slower_int8=True)
    assert publishable(ROWS, _bench(0.75), lenient, "m") == ["quantize", "prune"]
    failed = {**ROWS, "prune": {"passed": False}}
    assert publishable(failed, _bench(1.3), pool, "m") == ["quantize"]
