"""The nightly flow end to end on the tiny catalogue: real Prefect, real SeaweedFS."""

import hashlib
import json
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from tasks.core.project import Project
from tasks.storage import s3 as s3io


@pytest.fixture(scope="module")
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_nightly_publishes_verified_artifacts_and_reruns_from_cache(prefect_api, tiny_project: Path, capsys):
    from flows.nightly import nightly

    result = nightly(models=None, root=str(tiny_project))
    assert set(result) == {"tiny-text", "tiny-cnn"}
    p = Project.at(tiny_project)
    st = s3io.S3Settings.from_project(p)
    client = s3io.client(st)
    for model in ("tiny-text", "tiny-cnn"):
        published = json.loads((p.stage_dir(model, "publish") / "published.json").read_text())
        version = published["version"]
        assert version and published["artifacts"]
        manifest = json.loads(
            client.get_object(Bucket=st.publish_bucket, Key=f"{model}/{version}/local/manifest.json")["Body"].read()
        )
        assert manifest["model"] == model and manifest["version"] == version
        lineage = manifest["lineage"]
        assert lineage["git_sha"] is None or len(lineage["git_sha"]) == 40
        assert lineage["flow_run_id"] and len(lineage["input_model_sha256"]) == 64 and lineage["data_sha256"]
        assert {"torch", "onnxruntime", "prefect"} <= set(manifest["versions"])
        for stage, art in manifest["artifacts"].items():
            key = f"{model}/{version}/local/{stage}/model.onnx"
            body = client.get_object(Bucket=st.publish_bucket, Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == art["sha256"]
            packed = client.get_object(Bucket=st.publish_bucket, Key=f"{model}/{version}/local/{stage}/model.mcpk")
            package = packed["Body"].read()
            assert hashlib.sha256(package).hexdigest() == art["package"]["sha256"]
            assert len(package) == art["package"]["bytes"] < len(body)
            assert art["sha256"] == hashlib.sha256(p.artifact(model, stage).read_bytes()).hexdigest()
        latest = json.loads(
            client.get_object(Bucket=st.publish_bucket, Key=f"{model}/local/latest.json")["Body"].read()
        )
        assert latest == {"version": version, "manifest": f"{model}/{version}/local/manifest.json"}
        gates = {g["suite"]: g for g in manifest["gates"]}
        assert {"metrics-table", "calibration-data", "release-table"} < set(gates) and all(
            g["success"] and not g["failed"] for g in gates.values()
        )
        for g in gates.values():  # each gate's Data Docs site is published beside the artifacts
            key = g["docs"].removeprefix(f"s3://{st.publish_bucket}/")
            page = client.get_object(Bucket=st.publish_bucket, Key=key)["Body"].read().decode()
            assert key.endswith(f"gx_docs/{g['suite']}/index.html") and g["suite"] in page
        card = client.get_object(Bucket=st.publish_bucket, Key=f"{model}/{version}/local/README.md")["Body"].read()
        assert f"version `{version}`" in card.decode() and "dvc repro" in card.decode()
        assert "secret" not in json.dumps(manifest).lower()

    from prefect.artifacts import Artifact

    summary = Artifact.get("tiny-cnn-summary")
    assert summary is not None and "| quantize |" in summary.data and "Version `" in summary.data
    candidates = Artifact.get("tiny-cnn-candidates")
    assert candidates is not None and "distill" in str(candidates.data)
    assert "Search: 3 of 3 trials, stopped by exhausted; picked `" in summary.data
    trials = Artifact.get("tiny-cnn-search-trials")
    assert trials is not None and str(trials.data).count('"status": "passed"') == 3
    assert Artifact.get("tiny-text-search-trials") is None  # tiny-text asks for no search
    link = Artifact.get("tiny-cnn-quantize-published")
    assert link is not None and "s3://" in str(link.data)

    from flows.nightly import print_tables

    print_tables(p, list(result))
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 120  # a 120-column terminal holds the tables
    assert "tiny-cnn: version " in printed and "s3://" not in printed  # full URIs are in the report
    assert {"reference", "published"} <= set(printed.replace("│", " ").split())

    records = {m: json.loads((p.data / m / "report.record.json").read_text()) for m in result}
    again = nightly(models=None, root=str(tiny_project))
    for m in result:
        assert again[m]["publish"]["summary"]["version"] == result[m]["publish"]["summary"]["version"]
        assert json.loads((p.data / m / "report.record.json").read_text()) == records[m]


def test_unknown_model_fails_before_any_work(prefect_api, tiny_project: Path):
    from flows.nightly import nightly

    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        nightly(models=["resnet"], root=str(tiny_project))
    assert not (tiny_project / "data").exists()


def test_a_malformed_custom_entry_fails_before_any_work(prefect_api, tiny_project: Path, byo_files):
    import yaml

    from flows.nightly import nightly
    from tests.byo.sources import entry

    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    bad = entry(byo_files, "onnx")
    bad["eval"] = {**bad["eval"], "task": "regression"}
    params["models"]["team"] = bad
    params["catalogue"].append("team")
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        ValueError, match=r"eval.task must be one of \['classification', 'text-embedding', 'agreement'\]"
    ):
        nightly(models=None, root=str(tiny_project))
    assert not (tiny_project / "data").exists()  # not even the well-formed tiny models ran


def test_credentials_from_a_prefect_secret_block(prefect_api, s3_server, monkeypatch):
    from prefect.blocks.system import Secret

    from tests.conftest import ACCESS, SECRET

    st = s3io.S3Settings(s3_server.endpoint_url, "us-east-1", "block-zoo", "block-published", retry_budget_s=1.0)
    Secret(value=json.dumps({"aws_access_key_id": ACCESS, "aws_secret_access_key": SECRET})).save(
        "s3-good", overwrite=True
    )
    Secret(value=json.dumps({"aws_access_key_id": ACCESS, "aws_secret_access_key": "nope"})).save(
        "s3-bad", overwrite=True
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key-that-the-block-overrides")
    monkeypatch.setenv("S3_CREDENTIALS_BLOCK", "s3-good")
    s3io.ensure_buckets(s3io.client(st), st, ["block-zoo"])
    s3io.put_bytes(s3io.client(st), st, "block-zoo", "k", b"via block")
    monkeypatch.setenv("S3_CREDENTIALS_BLOCK", "s3-bad")
    with pytest.raises(s3io.S3Error, match="rejected the credentials"):
        s3io.put_bytes(s3io.client(st), st, "block-zoo", "k", b"x")
    monkeypatch.setenv("S3_CREDENTIALS_BLOCK", "s3-absent")
    with pytest.raises(s3io.S3Error, match=r"Secret block 's3-absent' .* not found"):
        s3io.client(st)


def test_a_custom_model_from_s3_is_published_and_a_broken_one_does_not_stop_the_batch(
    prefect_api, s3_server, byo_files, tmp_path: Path
):
    """Two catalogue entries only, no code: the team's ONNX model and eval data on S3 (sha256
    checked), and a safetensors entry whose factory does not import."""
    from flows.nightly import ModelsFailed, nightly
    from model_compression.hashing import sha256_tree
    from tests.byo.sources import entry
    from tests.conftest import make_project

    prefix = "byo" + format(abs(hash(str(tmp_path))) % 10**6, "06d")
    params = {
        "seed": 0,
        "threads": 1,
        "pools": {"local": {"work_pool": None, "preset": "avx2", "publish_slower_int8": True}},
        "catalogue": ["digits", "broken"],
        "s3": {
            "endpoint_url": s3_server.endpoint_url,
            "region": "us-east-1",
            "zoo_bucket": f"{prefix}-zoo",
            "publish_bucket": f"{prefix}-pub",
            "dvc_bucket": f"{prefix}-dvc",
        },
    }
    root = make_project(tmp_path / "project", {**params, "models": {}})
    st = s3io.S3Settings.from_project(Project.at(root))
    client = s3io.client(st)
    s3io.ensure_buckets(client, st, st.buckets)
    client.upload_file(str(byo_files["onnx"]), st.zoo_bucket, "team/digits.onnx")
    client.upload_file(str(byo_files["data"]), st.zoo_bucket, "team/digits_test.npz")
    digits = entry(byo_files, "onnx")
    digits["source"] = {"uri": f"s3://{st.zoo_bucket}/team/digits.onnx", "sha256": sha256_tree(byo_files["onnx"])}
    digits["eval"] = {**digits["eval"], "data": f"s3://{st.zoo_bucket}/team/digits_test.npz"}
    broken = entry(byo_files, "safetensors")
    broken["arch"] = {**broken["arch"], "factory": "team_models:missing"}
    root = make_project(tmp_path / "project", {**params, "models": {"digits": digits, "broken": broken}})

    with pytest.raises(ModelsFailed, match=r"1 of 2 model\(s\) failed \(broken: .*'team_models:missing' cannot be"):
        nightly(models=None, root=str(root))
    page = (root / "data/broken/report-failed.html").read_text()  # the reason at the top of its page
    assert "broken: the run failed" in page and "team_models:missing" in page
    assert not (root / "data/digits/report-failed.html").exists()

    published = json.loads((root / "data/digits/publish/published.json").read_text())
    version = published["version"]
    assert set(published["artifacts"]) == {"prune", "quantize", "factorize"}
    manifest = json.loads(
        client.get_object(Bucket=st.publish_bucket, Key=f"digits/{version}/local/manifest.json")["Body"].read()
    )
    assert "student architecture" in manifest["skipped"]["distill"]
    assert manifest["lineage"]["data_sha256"] == {"data": sha256_tree(byo_files["data"])}
    card = client.get_object(Bucket=st.publish_bucket, Key=f"digits/{version}/local/README.md")["Body"].read()
    assert "| distill | skipped: distillation needs a student architecture" in card.decode()
    page = client.get_object(Bucket=st.publish_bucket, Key=f"digits/{version}/local/report.html")["Body"].read()
    assert b"no: skipped: distillation needs a student architecture" in page and b"<th>top3_<wbr>accuracy</th>" in page
    assert not (root / "data/broken/baseline").exists()  # nothing half-built for the broken entry
