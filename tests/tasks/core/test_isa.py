"""Kernel-ISA pins: a pinned stage run from a process that loaded torch unpinned runs in a
child started under the profile; ``python -m tasks`` pins itself; both build the same bytes
and record the pins and the CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from model_compression.hashing import sha256_file
from tasks.core import isa
from tasks.core.pipeline import stage
from tasks.core.project import Project
from tests.conftest import run_until


def set_profile(root: Path, name: str) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["reproducibility"] = {"isa": name}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_profiles_are_named_and_an_unknown_one_is_refused():
    assert isa.profile_name({}) == "portable"  # the reproducible choice is the default
    assert isa.environment("portable")["ATEN_CPU_CAPABILITY"] == "default"
    assert isa.in_effect("native")  # pytest's process has no pins
    assert isa.environment("native", {"MKL_CBWR": "COMPATIBLE", "HOME": "/h"}) == {"HOME": "/h", isa.MARKER: "native"}
    with pytest.raises(ValueError, match=r"reproducibility.isa must be one of \['native', 'portable'\], got 'avx9'"):
        isa.profile_name({"reproducibility": {"isa": "avx9"}})
    assert isa.pin_at_start(Path.cwd()) is None  # torch is loaded here: too late to pin this process


def test_a_pinned_stage_runs_in_a_pinned_child_and_matches_python_m_tasks(tiny_project: Path, tmp_path: Path):
    run_until(tiny_project, "tiny-cnn", "fetch")
    set_profile(tiny_project, "portable")
    assert not isa.in_effect("portable")  # pytest loaded torch without pins
    rec = stage("baseline").run("tiny-cnn", str(tiny_project))
    assert rec["isa"]["profile"] == "portable" and rec["isa"]["pinned"]
    assert rec["isa"]["env"] == {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_CBWR": "COMPATIBLE",
        "DNNL_MAX_CPU_ISA": "SSE41",
    }
    assert rec["isa"]["torch_cpu_capability"] == "DEFAULT" and not rec["isa"]["mkldnn"] and rec["isa"]["cpu"]
    from model_compression.runtime.cpu import simd_flags

    assert rec["isa"]["cpu_flags"] == simd_flags() and "avx2" in simd_flags()  # the family that built it
    assert rec["params"]["reproducibility.isa"] == "portable"  # in the key: another profile re-trains
    assert os.environ.get(isa.MARKER) is None  # the pins went to the child only
    # the DVC entry point pins its own process at start, and trains the same bytes
    other = tmp_path / "other"
    shutil.copytree(tiny_project, other)
    built = Project.at(other).stage_dir("tiny-cnn", "baseline")
    shutil.rmtree(built)
    built.with_name("baseline.record.json").unlink()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, "-m", "tasks", "baseline", "tiny-cnn", "--root", str(other)]
    out = subprocess.run(cmd, cwd=other, env={**env, "PYTHONPATH": str(Path.cwd())}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "child process" not in out.stderr  # pinned at start: no second process
    model = Project.at(tiny_project).artifact("tiny-cnn", "baseline")
    assert sha256_file(Project.at(other).artifact("tiny-cnn", "baseline")) == sha256_file(model)
    # unpinned, the profile differs: the stage's key changes and it re-trains in this process
    set_profile(tiny_project, "native")
    native = stage("baseline").run("tiny-cnn", str(tiny_project))
    assert native["key"] != rec["key"] and native["isa"] == {**native["isa"], "profile": "native", "pinned": True}
