"""Publishing for a pool: upload passing artifacts, their manifest and model card to S3.

The ``publish`` stage publishes for this machine's pool; a flow serving a remote pool
(``flows/pool_serve.py``) publishes that pool's artifacts the same way.

Layout, under ``s3://<publish_bucket>/``::

    <model>/<version>/<pool>/<artifact>/model.onnx   uploaded first, each read back and sha256-checked
    <model>/<version>/<pool>/README.md               the model card
    <model>/<version>/<pool>/manifest.json           written last, only if absent (If-None-Match)
    <model>/<pool>/latest.json                       moved only after the manifest exists

``version`` is derived from the artifacts' sha256, the fp32 input and the model's params,
never from a clock. A version without a manifest is incomplete and never referenced, so a
run killed at any point leaves ``latest`` on the previous complete version. Republishing
identical content is a no-op; a manifest with other content under the same version is an
error, never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_compression.hashing import sha256_file, sha256_json
from model_compression.search.pareto import pareto_points
from tasks.core import faults, runtime
from tasks.core.project import Project
from tasks.core.stage import library_versions
from tasks.gates import regression, release
from tasks.pools import PoolSpec, local_pool
from tasks.present import model_card
from tasks.storage import s3 as s3io

log = logging.getLogger("pipeline")
MANIFEST = "manifest.json"
# (client, settings, bucket, prefix) of versions being uploaded right now, before their
# manifest exists: what a cancelled run deletes, so that no half-published version stays.
IN_FLIGHT: set[tuple[Any, s3io.S3Settings, str, str]] = set()


class PublishConflict(ValueError):
    """A version already published holds different content."""


def git_sha(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def lineage(project: Project, model: str) -> dict[str, Any]:
    """Where the artifacts came from: code, pipeline lock, input model and data hashes."""
    lock = project.root / "dvc.lock"
    return {
        "git_sha": git_sha(project.root),
        "dvc_lock_sha256": sha256_file(lock) if lock.is_file() else None,
        **project.kind(model).lineage(project, model),
        "flow_run_id": runtime.FLOW_RUN_ID.get(),
    }


def _same_content(existing: bytes, hashes: dict[str, str], where: str) -> None:
    old = {k: v["sha256"] for k, v in json.loads(existing)["artifacts"].items()}
    if old != hashes:
        raise PublishConflict(f"{where} already holds different content; refusing to overwrite a published version")


def publishable(rows: dict[str, dict[str, Any]], bench: dict[str, Any], spec: PoolSpec, model: str) -> list[str]:
    """The artifacts that passed validation and, unless the pool allows it, are not int8
    artifacts slower than fp32 on the pool (``bench["int8_slower"]``)."""
    out = []
    for name, row in rows.items():
        if name == "baseline" or not row["passed"]:
            continue
        if name in bench.get("int8_slower", []) and not spec.publish_slower_int8:
            speed = bench["speedup_vs_fp32"][name][str(bench["serving_batch"])]
            log.warning(
                "%s/%s is not published for pool %s: int8 runs %.2fx fp32 speed there at batch %s",
                model,
                name,
                spec.name,
                speed,
                bench["serving_batch"],
            )
            continue
        out.append(name)
    return out


@dataclass(frozen=True)
class Release:
    """One version about to be published for one pool: what every upload step shares."""

    project: Project
    model: str
    spec: PoolSpec
    files: dict[str, Path]
    rows: dict[str, dict[str, Any]]
    bench: dict[str, Any]
    passed: list[str]
    hashes: dict[str, str]
    version: str
    params: dict[str, Any]

    @property
    def prefix(self) -> str:
        return f"{self.model}/{self.version}/{self.spec.name}"


def publish_artifacts(
    project: Project,
    model: str,
    spec: PoolSpec,
    files: dict[str, Path],
    rows: dict[str, dict[str, Any]],
    bench: dict[str, Any],
) -> dict[str, Any]:
    """Publish the publishable ``files`` of ``model`` for pool ``spec``; returns
    ``{"version", "pool", "artifacts": {name: uri}}`` (version ``None`` if nothing passed)."""
    passed = publishable(rows, bench, spec, model)
    if not passed:
        log.warning("%s: no artifact is publishable for pool %s; nothing published", model, spec.name)
        return {"version": None, "pool": spec.name, "artifacts": {}}
    hashes = {s: sha256_file(files[s]) for s in passed}
    params = project.resolved(model)
    version = sha256_json(
        {"model": model, "artifacts": hashes, "baseline": sha256_file(files["baseline"]), "params": params}
    )[:16]
    rel = Release(project, model, spec, files, rows, bench, passed, hashes, version, params)
    with s3io.available(project) as (s3, settings):
        bucket = settings.publish_bucket
        existing = s3io.get_bytes(s3, settings, bucket, f"{rel.prefix}/{MANIFEST}")
        if existing is not None:
            _same_content(existing, hashes, f"s3://{bucket}/{rel.prefix}")
            log.info("%s version %s already published with the same content", model, version)
        else:
            _upload_version(rel, s3, settings)
        pointer = {"version": version, "manifest": f"{rel.prefix}/{MANIFEST}"}
        faults.point("latest")
        s3io.put_bytes(s3, settings, bucket, f"{model}/{spec.name}/latest.json", json.dumps(pointer).encode())
    return {"version": version, "pool": spec.name, "artifacts": {s: _uri(bucket, rel.prefix, s) for s in passed}}


def _uri(bucket: str, prefix: str, name: str, file: str = "model.onnx") -> str:
    return f"s3://{bucket}/{prefix}/{name}/{file}"


def _upload_version(rel: Release, s3: Any, settings: s3io.S3Settings) -> None:
    """Gates first (either raises before any upload), then every file, the model card, and
    the manifest last (a conditional write: one run's manifest per version)."""
    project, model, bucket = rel.project, rel.model, settings.publish_bucket
    released = release.check(project, model, rel.passed, rel.rows, rel.bench)
    regression_record = _regression(project, model, rel.spec, rel.files, rel.passed, rel.bench, s3, settings)
    packages = _packages(project, model, rel.files, rel.passed)
    flight = (s3, settings, bucket, rel.prefix)
    IN_FLIGHT.add(flight)
    try:
        docs = project.stage_dir(model, "validate") / "gx_docs"
        for path in sorted(p for p in docs.rglob("*") if p.is_file()) if docs.is_dir() else []:
            # Great Expectations' Data Docs of the gates these artifacts passed
            s3io.upload_file(s3, settings, path, bucket, f"{rel.prefix}/gx_docs/{path.relative_to(docs).as_posix()}")
        for name, data in released["site"].items():
            s3io.put_bytes(s3, settings, bucket, f"{rel.prefix}/gx_docs/{name}", data)
        for s in rel.passed:
            _upload_verified(s3, settings, rel.files[s], bucket, f"{rel.prefix}/{s}/model.onnx", rel.hashes[s])
            faults.point("upload")
            if s in packages:  # the entropy-coded transfer package of the same artifact
                pk = packages[s]
                _upload_verified(s3, settings, pk["path"], bucket, f"{rel.prefix}/{s}/model.mcpk", pk["sha256"])
        manifest = _manifest(rel, bucket, regression_record, packages, released["summary"])
        s3io.put_bytes(s3, settings, bucket, f"{rel.prefix}/README.md", model_card.render(manifest).encode())
        body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        faults.point("manifest")
        if s3io.put_if_absent(s3, settings, bucket, f"{rel.prefix}/{MANIFEST}", body):
            log.info("%s: published version %s for pool %s (%d artifacts)", model, rel.version, rel.spec.name,
                     len(rel.passed))  # fmt: skip
        else:  # a concurrent run wrote this version's manifest first
            theirs = s3io.get_bytes(s3, settings, bucket, f"{rel.prefix}/{MANIFEST}") or b"{}"
            _same_content(theirs, rel.hashes, rel.prefix)
            log.info("%s version %s was published concurrently with the same content", model, rel.version)
    finally:
        IN_FLIGHT.discard(flight)


def _manifest(
    rel: Release, bucket: str, regression_record: Any, packages: dict[str, Any], release_summary: dict[str, Any]
) -> dict[str, Any]:
    """What a published version is: params, lineage, gates, and every artifact's URI, sha256,
    quality, latency and transfer package."""
    project, model, rows = rel.project, rel.model, rel.rows
    quality = project.kind(model).quality_columns(project, model)[0]
    return {
        "model": model,
        "version": rel.version,
        "pool": rel.spec.name,
        "params": rel.params,
        "seed": project.seed,
        "threads": project.threads,
        "versions": library_versions(),
        "lineage": lineage(project, model),
        "skipped": project.skipped(model),
        "regression": regression_record,
        "pareto": pareto_front(rows, rel.bench, rel.passed, quality),
        "gates": [
            {**g, "docs": f"s3://{bucket}/{rel.prefix}/{g['docs']}" if g.get("docs") else None}
            for g in [*_gates(project, model), release_summary]
        ],
        "fingerprint": rel.bench["fingerprint"],
        "preset": rel.bench.get("preset"),
        "baseline": {
            "size_bytes": rows["baseline"]["size_bytes"],
            "sha256": sha256_file(rel.files["baseline"]),
            **_quality(rows["baseline"]),
        },
        "artifacts": {
            s: {
                "uri": _uri(bucket, rel.prefix, s),
                "sha256": rel.hashes[s],
                "metrics": rows[s],
                "latency": rel.bench["results"][s],
                **({"package": _package_entry(bucket, rel.prefix, s, packages[s])} if s in packages else {}),
            }
            for s in rel.passed
        },
    }


def discard_in_flight() -> list[str]:
    """Delete the objects of every version still being uploaded (a cancelled run): no
    version without a manifest is left behind. Returns the prefixes deleted."""
    done = []
    for s3, settings, bucket, prefix in list(IN_FLIGHT):
        for key in s3io.list_keys(s3, settings, bucket, prefix + "/"):
            s3.delete_object(Bucket=bucket, Key=key)
        IN_FLIGHT.discard((s3, settings, bucket, prefix))
        done.append(f"s3://{bucket}/{prefix}")
    return done


def pareto_front(
    rows: dict[str, dict[str, Any]], bench: dict[str, Any], names: list[str], quality: str
) -> list[dict[str, Any]]:
    """The published artifacts on this pool's front of size x quality x latency (p50 at
    the serving batch): what the report plots across nights."""
    serving = str(bench["serving_batch"])
    pts = [
        {
            "artifact": s,
            "size_bytes": rows[s]["size_bytes"],
            "quality": rows[s][quality],
            "p50_ms": bench["results"][s][serving]["p50_ms"],
        }
        for s in names
    ]
    return [{k: v for k, v in p.items() if k != "on_front"} for p in pareto_points(pts) if p["on_front"]]


def _regression(
    project: Project,
    model: str,
    spec: PoolSpec,
    files: dict[str, Path],
    names: list[str],
    bench: dict[str, Any],
    s3: Any,
    settings: s3io.S3Settings,
) -> dict[str, Any] | None:
    """The regression gate against the version ``latest.json`` names for this model and
    pool (None when nothing was published before)."""
    bucket = settings.publish_bucket
    pointer = s3io.get_bytes(s3, settings, bucket, f"{model}/{spec.name}/latest.json")
    if pointer is None:
        return None
    prev = json.loads(pointer)
    raw = s3io.get_bytes(s3, settings, bucket, prev["manifest"])
    if raw is None:
        raise FileNotFoundError(f"latest.json of {model}/{spec.name} names {prev['manifest']}, which is missing")
    previous = json.loads(raw)

    def fetch(name: str, dest: Path) -> None:
        s3io.download_file(s3, settings, bucket, f"{model}/{previous['version']}/{spec.name}/{name}/model.onnx", dest)

    return regression.check(
        project,
        model,
        files,
        names,
        previous,
        fetch,
        measure_latency_here=spec.inline,
        batch=int(bench.get("serving_batch", 1)),
        seq_len=int((bench.get("settings") or {}).get("seq_len", 128)),
    )


def _gates(project: Project, model: str) -> list[dict[str, Any]]:
    """The Great Expectations gate summaries of ``model``'s validation (suite, expectations, docs)."""
    path = project.stage_dir(model, "validate") / "validation.json"
    return list(json.loads(path.read_text()).get("gates", [])) if path.is_file() else []


def _packages(project: Project, model: str, files: dict[str, Path], names: list[str]) -> dict[str, dict[str, Any]]:
    """The package stage's output for each of ``names`` whose file is this project's artifact
    (a pool's own re-quantized file has no package): exact packages, and inexact ones whose
    decoded model passed the tolerance on its own (validation.json ``packages``)."""
    folder = project.stage_dir(model, "package")
    table = json.loads((folder / "package.json").read_text()) if (folder / "package.json").is_file() else {}
    decoded = project.read_output(model, "validate", "validation.json").get("packages", {})
    out = {}
    for s in names:
        if s not in table or files[s] != project.artifact(model, s):
            continue
        if not table[s]["exact"] and not decoded.get(s, {}).get("passed"):
            log.warning(
                "%s/%s: its transfer package decodes to a model that fails the tolerance: not uploaded", model, s
            )
            continue
        path = folder / f"{s}.mcpk"
        out[s] = {"path": path, "sha256": sha256_file(path), **table[s], "decoded": decoded.get(s)}
    return out


def _package_entry(bucket: str, prefix: str, name: str, pk: dict[str, Any]) -> dict[str, Any]:
    return {
        "uri": f"s3://{bucket}/{prefix}/{name}/model.mcpk",
        "sha256": pk["sha256"],
        "bytes": pk["package_bytes"],
        "entropy_bound_bytes": pk["entropy_bound_bytes"],
        "coded_vs_bound": pk["coded_vs_bound"],
        "exact": pk["exact"],  # inexact: float weights at 8 bits; the quality below is the decoded model's
        **({"decoded_quality": _quality(pk["decoded"])} if pk["decoded"] else {}),
    }


def _quality(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if isinstance(v, float) and not k.endswith("_drop")}


def _upload_verified(s3: Any, settings: s3io.S3Settings, path: Path, bucket: str, key: str, sha: str) -> None:
    s3io.upload_file(s3, settings, path, bucket, key)
    back = s3io.get_bytes(s3, settings, bucket, key)
    if back is None or hashlib.sha256(back).hexdigest() != sha:
        raise ValueError(f"read-back sha256 of s3://{bucket}/{key} does not match the artifact {sha[:12]}")


def fetch_published(
    project: Project, model: str, dest: Path, version: str = "latest", pool_name: str | None = None
) -> dict[str, Any]:
    """Download a published version (default: the latest) for a pool (default: this
    machine's) into ``dest``, verifying every artifact against the manifest's sha256.
    Returns the manifest."""
    where = pool_name or local_pool(project).name
    with s3io.available(project) as (s3, settings):
        bucket = settings.publish_bucket
        if version == "latest":
            raw = s3io.get_bytes(s3, settings, bucket, f"{model}/{where}/latest.json")
            if raw is None:
                raise FileNotFoundError(f"nothing published for {model!r} on pool {where!r}")
            version = json.loads(raw)["version"]
        raw = s3io.get_bytes(s3, settings, bucket, f"{model}/{version}/{where}/{MANIFEST}")
        if raw is None:
            raise FileNotFoundError(f"version {version} of {model!r} has no manifest: it is not a complete publish")
        manifest: dict[str, Any] = json.loads(raw)
        for name, art in manifest["artifacts"].items():
            target = dest / name / "model.onnx"
            s3io.download_file(s3, settings, bucket, f"{model}/{version}/{where}/{name}/model.onnx", target)
            if sha256_file(target) != art["sha256"]:
                target.unlink()
                raise ValueError(f"sha256 of {model}/{version}/{name} does not match its manifest")
    return manifest


def audit(s3: Any, settings: s3io.S3Settings, model: str) -> dict[str, Any]:
    """What S3 holds for ``model``, checked: every ``latest.json`` names a version whose
    manifest exists, and every object a manifest lists is there with its sha256. Version
    prefixes without a manifest (a killed upload) are listed as ``incomplete``: never
    referenced, so harmless, and overwritten when that version is published again.
    Returns ``{"problems": [...], "versions": [...], "incomplete": [...]}``."""
    bucket, problems = settings.publish_bucket, []
    keys = s3io.list_keys(s3, settings, bucket, f"{model}/")
    manifests = {k.rsplit("/", 1)[0]: k for k in keys if k.endswith(f"/{MANIFEST}")}
    for pointer_key in (k for k in keys if k.endswith("/latest.json")):
        pointer = json.loads(s3io.get_bytes(s3, settings, bucket, pointer_key) or b"{}")
        if pointer.get("manifest") not in manifests.values():
            problems.append(f"{pointer_key} names {pointer.get('manifest')}, which has no manifest")
    for prefix, key in sorted(manifests.items()):
        for name, art in json.loads(s3io.get_bytes(s3, settings, bucket, key) or b"{}").get("artifacts", {}).items():
            data = s3io.get_bytes(s3, settings, bucket, f"{prefix}/{name}/model.onnx")
            if data is None or hashlib.sha256(data).hexdigest() != art.get("sha256"):
                problems.append(f"{prefix}/{name}/model.onnx is missing or fails its sha256")
    prefixes = {"/".join(k.split("/")[:3]) for k in keys if k.count("/") >= 3}  # <model>/<version>/<pool>
    incomplete = sorted(p for p in prefixes if p not in manifests)
    return {"problems": problems, "versions": sorted(manifests), "incomplete": incomplete}
