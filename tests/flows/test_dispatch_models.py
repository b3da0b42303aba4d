"""Past one machine: each model a flow run on any worker, stage outputs shared through S3.

Four clones of one project, each with its own ``data/`` and nothing shared on disk: two
"machines" run a process worker each (one flow run at a time) on one `prefect server
start`, a third dispatches the nightly, a fourth reruns it from nothing. They share the
Prefect server and one SeaweedFS, as machines would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.core.pipeline import ORDER
from tasks.core.project import Project
from tests.conftest import make_project, tiny_params

pytestmark = pytest.mark.slow
POOL, MODELS = "two-machines", ("tiny-text", "tiny-cnn")


def sh(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``args`` in ``cwd`` with the clone's own copy of the code (no PYTHONPATH)."""
    env = {k: v for k, v in (env or os.environ).items() if k != "PYTHONPATH"}
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


@pytest.fixture
def template(tmp_path: Path, s3_server: Any, tiny_bert_dir: Path, tiny_fmnist_dir: Path) -> Path:
    """The project every clone starts from: the tiny catalogue, a stage cache, the dispatch
    pool, and the kernel profile measured once (committed with the code, as in the repo)."""
    params = tiny_params(s3_server.endpoint_url, tiny_bert_dir, tiny_fmnist_dir, "twomachines")
    params["s3"]["cache_bucket"] = "twomachines-cache"
    params["dispatch"] = {"work_pool": POOL, "timeout_s": 900}
    root = make_project(tmp_path / "template", params, with_code=True)
    sh(root, sys.executable, "-m", "tasks", "kernels")
    return root


def clone(template: Path, dest: Path, dvc: bool = False) -> Path:
    shutil.copytree(template, dest)
    if dvc:  # the dispatching clone records the run in its dvc.lock
        for args in (["git", "init", "-q"], ["dvc", "init", "-q"], [sys.executable, "-m", "tasks", "dvc-yaml"]):
            sh(dest, *[str(Path(sys.executable).with_name(a)) if a == "dvc" else a for a in args])
    return dest


def built_here(root: Path) -> set[str]:
    """Models with a stage built in this clone (a fetched stage's record names the cache)."""
    return {
        m
        for m in MODELS
        for s in ORDER
        if (rec := root / "data" / m / f"{s}.record.json").is_file()
        and "fetched_from" not in json.loads(rec.read_text())
    }


def test_a_nightly_dispatched_per_model_runs_on_two_machines_and_a_fresh_clone_builds_nothing(
    api: Any, template: Path, tmp_path: Path
):
    from flows.nightly import nightly

    machines = {name: clone(template, tmp_path / name) for name in ("machine-a", "machine-b")}
    api.cli("work-pool", "create", "--type", "process", POOL)
    api.cli("--no-prompt", "deploy", "--name", "compress-model", "--pool", POOL)
    for name, root in machines.items():
        api.worker(POOL, root=root, name=name)

    dispatcher = clone(template, tmp_path / "dispatcher", dvc=True)
    # a process of its own: `dvc commit` records the clone's own code, which this process is not
    sh(dispatcher, sys.executable, "-m", "flows.cli", "run", "--dispatch", env={**api.env, "PIPELINE_ROOT": "."})
    built = {name: built_here(root) for name, root in machines.items()}
    assert sorted(len(b) for b in built.values()) == [1, 1] and set.union(*built.values()) == set(MODELS)
    assert built_here(dispatcher) == set()  # every stage fetched from the stage cache
    for m in MODELS:
        published = json.loads((Project.at(dispatcher).stage_dir(m, "publish") / "published.json").read_text())
        assert published["version"]
    status = sh(dispatcher, str(Path(sys.executable).with_name("dvc")), "status")
    # dvc.lock records what was fetched: no model's stage is stale (`kernels`, the machine's
    # kernel profile, is an always-changed DVC stage by design)
    assert not re.findall(r"^\S+\.\S+:$", status, flags=re.M), status

    rerun = clone(template, tmp_path / "fresh")
    again = nightly(root=str(rerun))
    assert set(again) == set(MODELS) and built_here(rerun) == set()  # no stage body ran


def test_dispatch_to_a_pool_the_deployment_does_not_run_on_is_refused(api: Any, template: Path, tmp_path: Path):
    from flows.nightly import nightly

    params = yaml.safe_load((template / "params.yaml").read_text())
    params["dispatch"]["work_pool"] = "nobody-home"
    root = clone(template, tmp_path / "lonely")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for pool in ("elsewhere", "nobody-home"):  # pools of this test alone
        api.cli("work-pool", "create", "--type", "process", pool)
    api.cli("--no-prompt", "deploy", "--name", "compress-model", "--pool", "elsewhere")
    with pytest.raises(RuntimeError, match=r"cannot dispatch tiny-text, tiny-cnn: deployment .* runs on work pool "
                                           r"'elsewhere', not 'nobody-home'"):  # fmt: skip
        nightly(root=str(root), dispatch=True)
