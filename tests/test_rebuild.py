"""The stage key across the three entry points: ``dvc repro``, the Prefect flow and
``flows.cli plan`` agree on what is up to date, re-run exactly the stages whose code
changed, and rebuild the same bytes from a clean clone.

One DVC repository (a git repo holding the code and a tiny catalogue, with an S3 remote)
is built once by ``dvc repro`` and then edited by the tests in order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_compression.hashing import sha256_file
from tasks.core import dvcyaml
from tasks.core.pipeline import ORDER, stage
from tasks.core.project import Project
from tests.byo.sources import entry
from tests.conftest import make_project, tiny_params

pytestmark = pytest.mark.slow
MODELS = ("tiny-text", "tiny-cnn", "digits")
# digits (TorchScript) has no student to distil and no recipe; only tiny-cnn asks for a search
ABSENT = {"digits": {"distill", "recipe", "search"}, "tiny-text": {"search"}, "tiny-cnn": set()}


def sh(cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True, stdout: bool = False) -> str:
    full = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    full.update(env or {})
    full.pop("PYTHONPATH", None)  # the repository's own copy of the code, never this checkout's
    out = subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True, timeout=900)
    assert not check or out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout if stdout else out.stdout + out.stderr


def commit(repo: Path, message: str) -> None:
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


def records(repo: Path) -> dict[str, dict]:
    return {
        dvcyaml.dvc_name(s, m): json.loads((repo / "data" / m / f"{s}.record.json").read_text())
        for m in MODELS
        for s in ORDER
    }


def stale_in_plan(repo: Path) -> set[str]:
    """``<stage>.<model>`` for every stage ``flows.cli plan`` says will run."""
    plan = json.loads(sh(repo, sys.executable, "-m", "flows.cli", "plan", "--json", *MODELS, stdout=True))
    return {dvcyaml.dvc_name(s, m) for m, states in plan.items() for s, state in states.items() if state == "will run"}


def stale_in_dvc(repo: Path) -> set[str]:
    out = sh(repo, "dvc", "status")
    return {line.strip().rstrip(":") for line in out.splitlines() if re.match(r"^[a-z]\S*\.\S+:$", line.strip())}


def running(repo: Path, module: str) -> set[str]:
    """The stages whose code set holds ``module`` (the repository's code is this checkout's)."""
    project = Project.at(repo)
    return {dvcyaml.dvc_name(s, m) for m in MODELS for s in ORDER if module in stage(s).code_set(project, m)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, s3_server, tiny_bert_dir: Path, tiny_fmnist_dir: Path, byo_files):
    params = tiny_params(s3_server.endpoint_url, tiny_bert_dir, tiny_fmnist_dir, "rebuild")
    params["catalogue"].append("digits")  # a team's TorchScript model as a catalogue entry: no code
    params["models"]["digits"] = entry(byo_files, "torchscript")
    params["reproducibility"] = {"isa": "portable"}  # the default: every entry point runs the pinned stages pinned
    root = make_project(tmp_path_factory.mktemp("dvc") / "repo", params, with_code=True)
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    sh(root, "dvc", "remote", "add", "-d", "storage", "s3://rebuild-dvc")
    sh(root, "dvc", "remote", "modify", "storage", "endpointurl", s3_server.endpoint_url)
    sh(root, sys.executable, "-m", "tasks", "dvc-yaml")
    commit(root, "tiny project")
    imports = root.parent / "imports.jsonl"
    sh(root, "dvc", "repro", env={"PIPELINE_IMPORTS_LOG": str(imports)})
    return root, imports


def test_dvc_repro_runs_each_stage_within_its_declared_code_set(repo):
    root, imports = repo
    project = Project.at(root)
    runner = {"tasks.core.stage", "tasks.core.codehash", "tasks.core.logs", "tasks.core.pipeline", "tasks.core.faults",
              "tasks.core.procs", "tasks.__main__",
              # the live display's status file and the library's training reports it relays
              "tasks.core.progress", "model_compression.progress",
              # where S3 is up (make repro), the stage cache: it fetches outputs verified
              # against their record, never computes one
              "tasks.storage", "tasks.storage.stage_cache", "tasks.storage.s3", "tasks.storage.seaweed"}  # fmt: skip
    seen = [json.loads(line) for line in imports.read_text().splitlines()]
    assert {(r["stage"], r["model"]) for r in seen} == {(s, m) for s in ORDER for m in MODELS}
    for r in seen:
        declared = set(stage(r["stage"]).code_set(project, r["model"]))
        undeclared = set(r["modules"]) - declared - runner - {"tasks.core", "tasks.stages"}
        assert not undeclared, f"{r['stage']}.{r['model']} ran modules its declaration misses: {sorted(undeclared)}"
    for model in MODELS:
        built = project.artifacts(model)
        assert set(built) == set(project.artifact_names(model)) - ABSENT[model]
        assert set(project.skipped(model)) == ABSENT[model]
    # every entry point agrees that nothing is left to do
    assert stale_in_plan(root) == set() and stale_in_dvc(root) == set()
    shown = sh(root, "dvc", "metrics", "show", "--json")
    assert "data/tiny-cnn/report/metrics.json" in shown and "size_bytes" in shown


def test_a_clean_clone_pulls_and_rebuilds_the_same_bytes(repo, tmp_path: Path):
    root, _ = repo
    sh(root, "dvc", "push", "-q")
    commit(root, "data versions")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(root), str(clone))
    sh(clone, "dvc", "pull", "-q")
    sha = {(m, s): sha256_file(p) for m in MODELS for s, p in Project.at(root).artifacts(m).items()}
    for (m, s), digest in sha.items():
        assert sha256_file(Project.at(clone).artifact(m, s)) == digest, f"dvc pull gave another {m}/{s}"
    # a forced rebuild is a deleted output: the stage's key check would otherwise find it current
    rebuilt = [("tiny-cnn", s) for s in ("baseline", "prune", "quantize")]  # training, torch and ONNX surgery
    for m, s in rebuilt:
        shutil.rmtree(clone / "data" / m / s)
    sh(clone, "dvc", "repro", *(dvcyaml.dvc_name(s, m) for m, s in rebuilt))
    for m, s in rebuilt:
        assert sha256_file(clone / "data" / m / s / "model.onnx") == sha[(m, s)], f"dvc repro rebuilt another {m}/{s}"
    # a parameter sweep point as a DVC experiment, compared with metrics and plots diff
    sh(clone, "dvc", "exp", "run", "-q", "-S", "models.tiny-cnn.prune.sparsity=0.2", "report.tiny-cnn")
    changed = json.loads(sh(clone, "dvc", "metrics", "diff", "--json"))["data/tiny-cnn/report/metrics.json"]
    assert changed["prune.entropy_bound_bytes"]["new"] > changed["prune.entropy_bound_bytes"]["old"]
    sh(clone, "dvc", "plots", "diff", "-o", str(tmp_path / "plots"))
    assert "tiny-cnn/report/candidates.json" in (tmp_path / "plots" / "index.html").read_text()


def test_a_library_change_reruns_exactly_the_stages_that_run_it(repo):
    root, _ = repo
    # magnitude pruning runs in the prune stages, the search and the CNN's recipe, nowhere else
    magnitude = running(root, "model_compression.prune.magnitude")
    assert {"prune.tiny-cnn", "prune.tiny-text", "recipe.tiny-cnn", "search.tiny-cnn"} <= magnitude
    assert not magnitude & {f"{s}.{m}" for s in ("baseline", "quantize", "validate", "package") for m in MODELS}
    assert "recipe.tiny-text" not in magnitude  # its recipe (fusion, table coding, int8) never prunes
    # k-means runs in one stage: the CNN's recipe; edit it and see exactly that stage re-run
    kmeans = root / "model_compression/quantize/kmeans.py"
    expected = running(root, "model_compression.quantize.kmeans")
    assert expected == {"recipe.tiny-cnn"}
    kmeans.write_text(kmeans.read_text() + "\nEDITED = True  # a change of code: the AST differs\n")
    package = root / "model_compression/info/package.py"
    package.write_text(package.read_text() + "\n# a comment only: nothing re-runs\n")
    assert stale_in_plan(root) == expected
    # DVC hashes bytes, so it lists the commented module's stages too; their command then finds its key current
    assert stale_in_dvc(root) == expected | running(root, "model_compression.info.package")
    before = records(root)
    env = {"PREFECT_HOME": str(root.parent / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    sh(root, sys.executable, "-m", "flows.nightly", *MODELS, env=env)
    after = records(root)
    reran = {name for name in before if before[name]["key"] != after[name]["key"]}
    assert reran == expected  # and nothing downstream: the edit changed code, not what the code computes
    assert before["recipe.tiny-cnn"]["outputs"] == after["recipe.tiny-cnn"]["outputs"]
    assert stale_in_plan(root) == set()


def test_a_stage_change_reruns_the_stage_and_what_reads_its_outputs(repo):
    root, _ = repo
    module = root / "tasks/stages/package.py"
    module.write_text(
        module.read_text().replace(
            'write_json(out / "package.json", table)', 'write_json(out / "package.json", {**table, "edited": {}})'
        )
    )
    assert stale_in_plan(root) == {f"package.{m}" for m in MODELS} == stale_in_dvc(root)
    before = records(root)
    sh(root, "dvc", "repro", "report.tiny-cnn")  # DVC this time (the flow took the previous change), one model
    after = records(root)
    reran = {name for name in before if before[name]["key"] != after[name]["key"]}
    assert reran == {f"{s}.tiny-cnn" for s in ("package", "validate", "publish", "report")}  # validate decodes packages
    assert stale_in_plan(root) == {"package.tiny-text", "package.digits"} == stale_in_dvc(root)
