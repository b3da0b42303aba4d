"""Publishing against a real SeaweedFS: verified fetch, interrupted publishes, conflicts, races."""

import json
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from tasks import publishing as pub
from tasks.core.pipeline import stage
from tasks.core.project import Project
from tasks.storage import s3 as s3io
from tests.conftest import run_until


def client_of(root: Path) -> tuple[object, s3io.S3Settings]:
    st = s3io.S3Settings.from_project(Project.at(root))
    return s3io.client(st), st


def set_param(root: Path, path: list[str], value: object) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    node = params
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_fetch_published_verifies_sha256(tiny_built: Path, tmp_path: Path):
    rec = run_until(tiny_built, "tiny-cnn", "publish")
    p = Project.at(tiny_built)
    manifest = pub.fetch_published(p, "tiny-cnn", tmp_path / "got")
    assert manifest["version"] == rec["summary"]["version"]
    for name in manifest["artifacts"]:
        assert (tmp_path / "got" / name / "model.onnx").read_bytes() == p.artifact("tiny-cnn", name).read_bytes()
    client, st = client_of(tiny_built)
    name = next(iter(manifest["artifacts"]))
    key = f"tiny-cnn/{manifest['version']}/local/{name}/model.onnx"
    client.put_object(Bucket=st.publish_bucket, Key=key, Body=b"tampered")
    with pytest.raises(ValueError, match=f"sha256 of tiny-cnn/{manifest['version']}/{name} does not match"):
        pub.fetch_published(p, "tiny-cnn", tmp_path / "again")


def test_killed_publish_leaves_latest_on_the_previous_complete_version(tiny_built: Path, monkeypatch, tmp_path: Path):
    first = run_until(tiny_built, "tiny-cnn", "publish")["summary"]["version"]
    set_param(tiny_built, ["models", "tiny-cnn", "prune", "sparsity"], 0.3)  # a new version to publish
    for name in ("prune", "validate", "benchmark"):
        stage(name).run("tiny-cnn", str(tiny_built))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the manifest")  # what SIGINT raises mid-publish

    monkeypatch.setattr(s3io, "put_if_absent", killed)
    with pytest.raises(KeyboardInterrupt):
        stage("publish").run("tiny-cnn", str(tiny_built))
    p = Project.at(tiny_built)
    client, st = client_of(tiny_built)
    latest = json.loads(client.get_object(Bucket=st.publish_bucket, Key="tiny-cnn/local/latest.json")["Body"].read())
    assert latest["version"] == first
    assert pub.fetch_published(p, "tiny-cnn", tmp_path / "prev")["version"] == first
    assert json.loads((p.stage_dir("tiny-cnn", "publish") / "published.json").read_text())["version"] == first

    monkeypatch.undo()
    second = stage("publish").run("tiny-cnn", str(tiny_built))["summary"]["version"]
    assert second != first
    assert pub.fetch_published(p, "tiny-cnn", tmp_path / "new")["version"] == second


def test_different_content_under_a_published_version_is_refused(tiny_built: Path):
    rec = run_until(tiny_built, "tiny-cnn", "publish")
    version = rec["summary"]["version"]
    client, st = client_of(tiny_built)
    key = f"tiny-cnn/{version}/local/manifest.json"
    manifest = json.loads(client.get_object(Bucket=st.publish_bucket, Key=key)["Body"].read())
    name = next(iter(manifest["artifacts"]))
    manifest["artifacts"][name]["sha256"] = "0" * 64
    client.put_object(Bucket=st.publish_bucket, Key=key, Body=json.dumps(manifest).encode())
    shutil.rmtree(Project.at(tiny_built).stage_dir("tiny-cnn", "publish"))
    with pytest.raises(pub.PublishConflict, match="already holds different content"):
        stage("publish").run("tiny-cnn", str(tiny_built))


def test_concurrent_publishes_of_one_version_write_one_manifest(tiny_built: Path, tmp_path: Path):
    run_until(tiny_built, "tiny-cnn", "benchmark")
    twin = tmp_path / "twin"
    shutil.copytree(tiny_built, twin)
    results, errors = [], []

    def go(root: Path) -> None:
        try:
            results.append(stage("publish").run("tiny-cnn", str(root))["summary"]["version"])
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(r,)) for r in (tiny_built, twin)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    client, st = client_of(tiny_built)
    versions = client.list_object_versions(
        Bucket=st.publish_bucket, Prefix=f"tiny-cnn/{results[0]}/local/manifest.json"
    )
    assert len(versions.get("Versions", [])) == 1


def test_losing_the_manifest_race_is_a_no_op_not_an_overwrite(tiny_built: Path, monkeypatch):
    # Deterministic form of the race: this run looks for the manifest before the other
    # writer's lands, then finds the key taken when it tries to write its own.
    version = run_until(tiny_built, "tiny-cnn", "publish")["summary"]["version"]
    shutil.rmtree(Project.at(tiny_built).stage_dir("tiny-cnn", "publish"))
    real_get = s3io.get_bytes
    calls = {"n": 0}

    def stale_first_look(s3, settings, bucket, key):
        if key.endswith("manifest.json") and calls["n"] == 0:
            calls["n"] += 1
            return None
        return real_get(s3, settings, bucket, key)

    monkeypatch.setattr(s3io, "get_bytes", stale_first_look)
    assert stage("publish").run("tiny-cnn", str(tiny_built))["summary"]["version"] == version
    client, st = client_of(tiny_built)
    versions = client.list_object_versions(Bucket=st.publish_bucket, Prefix=f"tiny-cnn/{version}/local/manifest.json")
    assert len(versions.get("Versions", [])) == 1


def test_a_cancelled_publish_deletes_what_it_uploaded(s3_server, tiny_project: Path):
    from tasks import publishing

    p = Project.at(tiny_project)
    st = s3io.S3Settings.from_project(p)
    client = s3io.client(st)
    s3io.ensure_buckets(client, st, [st.publish_bucket])
    prefix = "tiny-cnn/0123456789abcdef/local"
    for key in ("quantize/model.onnx", "quantize/model.mcpk", "gx_docs/metrics-table/index.html"):
        s3io.put_bytes(client, st, st.publish_bucket, f"{prefix}/{key}", b"uploaded before the manifest")
    s3io.put_bytes(client, st, st.publish_bucket, "tiny-cnn/other/local/manifest.json", b"{}")  # someone else's
    publishing.IN_FLIGHT.add((client, st, st.publish_bucket, prefix))
    assert publishing.discard_in_flight() == [f"s3://{st.publish_bucket}/{prefix}"]
    assert s3io.list_keys(client, st, st.publish_bucket, prefix) == [] and not publishing.IN_FLIGHT
    assert s3io.list_keys(client, st, st.publish_bucket, "tiny-cnn/other/") == ["tiny-cnn/other/local/manifest.json"]
