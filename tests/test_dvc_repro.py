"""`dvc repro` in a temporary git repository runs the same stage functions as Prefect and
rebuilds the same artifacts byte for byte; `dvc push` to the S3 remote, then `dvc pull` and a
forced `dvc repro` in a clean clone, give the same sha256 again."""

import json
import os
import subprocess
import sys
from pathlib import Path

from model_compression.hashing import sha256_file
from tasks.prefect_tasks import TASKS
from tasks.project import ARTIFACT_STAGES, Project
from tasks.stages import ORDER
from tests.byo.sources import entry
from tests.conftest import make_project, tiny_params


def sh(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_dvc_repro_matches_the_prefect_tasks(
    tmp_path: Path, s3_server, tiny_bert_dir: Path, tiny_fmnist_dir: Path, byo_files: dict[str, Path]
):
    params = tiny_params(s3_server.endpoint_url, tiny_bert_dir, tiny_fmnist_dir, "dvcrepro")
    # a team's TorchScript model as a catalogue entry: no code, the same dvc.yaml
    params["catalogue"].append("digits")
    params["models"]["digits"] = entry(byo_files, "torchscript")
    repo = make_project(tmp_path / "repo", params, with_code=True)
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "dvc", "remote", "add", "-d", "storage", "s3://dvcrepro-dvc")
    sh(repo, "dvc", "remote", "modify", "storage", "endpointurl", s3_server.endpoint_url)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny project")
    sh(repo, "dvc", "repro")

    # The same params through the Prefect tasks' functions, in another folder.
    other = make_project(tmp_path / "other", params)
    for model in params["catalogue"]:
        for stage in ORDER:
            TASKS[stage].fn(model, str(other))
        built = Project.at(repo).artifacts(model)
        assert set(built) == set(Project.at(other).artifacts(model))
        # digits (TorchScript) has no student to distil and no recipe; only tiny-cnn asks for a search
        absent = {"digits": {"distill", "recipe", "search"}, "tiny-text": {"search"}, "tiny-cnn": set()}[model]
        assert set(built) == set(ARTIFACT_STAGES) - absent
        assert set(Project.at(repo).skipped(model)) == absent
        for stage in built:
            a = sha256_file(repo / "data" / model / stage / "model.onnx")
            b = sha256_file(other / "data" / model / stage / "model.onnx")
            assert a == b, f"{model}/{stage} differs between dvc repro and the Prefect task"
        published = [
            json.loads((root / "data" / model / "publish" / "published.json").read_text()) for root in (repo, other)
        ]
        assert published[0]["version"] == published[1]["version"]

    metrics = json.loads(sh(repo, "dvc", "metrics", "show", "--json"))
    shown = json.dumps(metrics)
    assert "data/tiny-cnn/report/metrics.json" in shown and "size_bytes" in shown
    status = sh(repo, "dvc", "status")
    assert "up to date" in status

    # Push the data versions, then rebuild from a clean clone.
    sh(repo, "dvc", "push", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data versions")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    sh(clone, "dvc", "pull", "-q")
    sha = {(m, s): sha256_file(p) for m in params["catalogue"] for s, p in Project.at(repo).artifacts(m).items()}
    for (m, s), digest in sha.items():
        assert sha256_file(clone / "data" / m / s / "model.onnx") == digest, f"dvc pull gave another {m}/{s}"
    compute = [f"{stage}@{m}" for m in params["catalogue"] for stage in ORDER[2:8]]
    sh(clone, "dvc", "repro", "-f", "-s", *compute)  # rebuild every artifact from the pulled inputs
    for (m, s), digest in sha.items():
        assert sha256_file(clone / "data" / m / s / "model.onnx") == digest, f"dvc repro -f rebuilt another {m}/{s}"

    # A parameter sweep point as a DVC experiment, compared with metrics and plots diff.
    sh(clone, "dvc", "exp", "run", "-q", "-S", "models.tiny-cnn.prune.sparsity=0.2", "report@tiny-cnn")
    diff = json.loads(sh(clone, "dvc", "metrics", "diff", "--json"))
    changed = diff["data/tiny-cnn/report/metrics.json"]
    assert "prune.entropy_bound_bytes" in changed
    assert changed["prune.entropy_bound_bytes"]["new"] > changed["prune.entropy_bound_bytes"]["old"]
    sh(clone, "dvc", "plots", "diff", "-o", str(tmp_path / "plots"))
    assert "tiny-cnn/report/candidates.json" in (tmp_path / "plots" / "index.html").read_text()
