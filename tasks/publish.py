"""Stage ``publish``: upload passing artifacts, their manifest and model card to S3.

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
import tempfile
from pathlib import Path
from typing import Any

from model_compression.datasets.text import gensim_datapath
from model_compression.hashing import sha256_file, sha256_json, sha256_tree
from model_compression.search.pareto import front
from model_compression.search.space import allowed_drop
from tasks import custom, model_card, quality, regression
from tasks import s3 as s3io
from tasks.pools import PoolSpec, local_pool
from tasks.project import Project
from tasks.stage import Stage, library_versions, write_json
from tasks.validate import load_rows, model_gates, quality_columns, tolerance

log = logging.getLogger("pipeline")
MANIFEST = "manifest.json"
TEXT_DATA = ("lee.cor", "similarities0-1.txt", "pang_lee_polarity.cor", "lee_background.cor")


class PublishConflict(ValueError):
    """A version already published holds different content."""


def pool(project: Project) -> str:
    """The pool the ``publish`` stage publishes for: this machine's (see tasks/pools.py)."""
    return local_pool(project).name


def git_sha(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None
    except Exception:  # outside a flow (dvc repro) there is no run id
        return None


def lineage(project: Project, model: str) -> dict[str, Any]:
    """Where the artifacts came from: code, pipeline lock, input model and data hashes."""
    lock = project.root / "dvc.lock"
    if project.kind(model) == "custom":
        data = {role: digest for role, (_, digest, _) in custom.files(project, model).items() if role != "model"}
    elif project.kind(model) == "text-encoder":
        data = {name: sha256_file(gensim_datapath(name)) for name in TEXT_DATA}
    else:
        data = {"fashion-mnist": sha256_tree(project.stage_dir(model, "fetch"))}
    return {
        "git_sha": git_sha(project.root),
        "dvc_lock_sha256": sha256_file(lock) if lock.is_file() else None,
        "input_model_sha256": sha256_tree(
            project.stage_dir(model, "baseline" if project.kind(model) == "image-classifier" else "fetch")
        ),
        "data_sha256": data,
        "flow_run_id": flow_run_id(),
    }


def _same_content(existing: bytes, hashes: dict[str, str], where: str) -> None:
    old = {k: v["sha256"] for k, v in json.loads(existing)["artifacts"].items()}
    if old != hashes:
        raise PublishConflict(f"{where} already holds different content; refusing to overwrite a published version")


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    files = project.artifacts(model)
    bench = project.read_output(model, "benchmark", "bench.json")
    published = publish_artifacts(project, model, local_pool(project), files, load_rows(project, model), bench)
    write_json(out / "published.json", published)
    return {"version": published["version"], "published": sorted(published["artifacts"])}


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
    where = spec.name
    passed = publishable(rows, bench, spec, model)
    if not passed:
        log.warning("%s: no artifact is publishable for pool %s; nothing published", model, where)
        return {"version": None, "pool": where, "artifacts": {}}
    hashes = {s: sha256_file(files[s]) for s in passed}
    base_sha = sha256_file(files["baseline"])
    version = sha256_json({"model": model, "artifacts": hashes, "baseline": base_sha, "params": project.entry(model)})[
        :16
    ]
    with s3io.available(project) as (s3, settings):
        bucket = settings.publish_bucket
        prefix = f"{model}/{version}/{where}"
        uris = {s: f"s3://{bucket}/{prefix}/{s}/model.onnx" for s in passed}
        existing = s3io.get_bytes(s3, settings, bucket, f"{prefix}/{MANIFEST}")
        if existing is not None:
            _same_content(existing, hashes, f"s3://{bucket}/{prefix}")
            log.info("%s version %s already published with the same content", model, version)
        else:
            # the release table, then the version serving uses now: either raises before any upload
            release = _release_gate(project, model, passed, rows, bench)
            regression_record = _regression(project, model, spec, files, passed, bench, s3, settings)
            packages = _packages(project, model, files, passed)
            gates = _gates(project, model)
            docs = project.stage_dir(model, "validate") / "gx_docs"
            for path in sorted(p for p in docs.rglob("*") if p.is_file()) if docs.is_dir() else []:
                # Great Expectations' Data Docs of the gates these artifacts passed
                s3io.upload_file(s3, settings, path, bucket, f"{prefix}/gx_docs/{path.relative_to(docs).as_posix()}")
            for rel, data in release["site"].items():
                s3io.put_bytes(s3, settings, bucket, f"{prefix}/gx_docs/{rel}", data)
            for s in passed:
                _upload_verified(s3, settings, files[s], bucket, f"{prefix}/{s}/model.onnx", hashes[s])
                if s in packages:  # the entropy-coded transfer package of the same artifact
                    pk = packages[s]
                    _upload_verified(s3, settings, pk["path"], bucket, f"{prefix}/{s}/model.mcpk", pk["sha256"])
            manifest = {
                "model": model,
                "version": version,
                "pool": where,
                "params": project.entry(model),
                "seed": project.seed,
                "threads": project.threads,
                "versions": library_versions(),
                "lineage": lineage(project, model),
                "skipped": project.skipped(model),
                "regression": regression_record,
                "pareto": pareto_front(rows, bench, passed, quality_columns(project, model)[0]),
                "gates": [
                    {**g, "docs": f"s3://{bucket}/{prefix}/{g['docs']}" if g.get("docs") else None}
                    for g in [*gates, release["summary"]]
                ],
                "fingerprint": bench["fingerprint"],
                "preset": bench.get("preset"),
                "baseline": {
                    "size_bytes": rows["baseline"]["size_bytes"],
                    "sha256": base_sha,
                    **_quality(rows["baseline"]),
                },
                "artifacts": {
                    s: {
                        "uri": uris[s],
                        "sha256": hashes[s],
                        "metrics": rows[s],
                        "latency": bench["results"][s],
                        **({"package": _package_entry(bucket, prefix, s, packages[s])} if s in packages else {}),
                    }
                    for s in passed
                },
            }
            s3io.put_bytes(s3, settings, bucket, f"{prefix}/README.md", model_card.render(manifest).encode())
            body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
            if s3io.put_if_absent(s3, settings, bucket, f"{prefix}/{MANIFEST}", body):
                log.info("%s: published version %s for pool %s (%d artifacts)", model, version, where, len(passed))
            else:  # a concurrent run wrote this version's manifest first
                _same_content(s3io.get_bytes(s3, settings, bucket, f"{prefix}/{MANIFEST}") or b"{}", hashes, prefix)
                log.info("%s version %s was published concurrently with the same content", model, version)
        pointer = {"version": version, "manifest": f"{prefix}/{MANIFEST}"}
        s3io.put_bytes(s3, settings, bucket, f"{model}/{where}/latest.json", json.dumps(pointer).encode())
    return {"version": version, "pool": where, "artifacts": uris}


def _release_gate(
    project: Project, model: str, names: list[str], rows: dict[str, dict[str, Any]], bench: dict[str, Any]
) -> dict[str, Any]:
    """Great Expectations on the table about to be published for this pool (quality,
    drops within tolerance, size and latency budgets, embedding norms); raises
    ``QualityGateError`` naming the failed expectation. Returns its summary and its Data
    Docs site as ``{relative path: bytes}``."""
    serving = str(bench["serving_batch"])
    base = rows["baseline"]
    qcols = quality_columns(project, model)
    tol = tolerance(project, model)
    table = []
    for s in names:
        r = rows[s]
        row = {"artifact": s, "size_bytes": r["size_bytes"], "p50_ms": bench["results"][s][serving]["p50_ms"]}
        row.update({q: r[q] for q in qcols})
        row.update({f"{m}_drop": r[f"{m}_drop"] for m in tol})  # as validate's judge computed them
        if "embedding_norm" in r and base.get("embedding_norm"):
            row["embedding_norm_ratio"] = r["embedding_norm"] / base["embedding_norm"]
        table.append(row)
    allowed = {m: allowed_drop(spec, base[m]) for m, spec in tol.items()}
    with tempfile.TemporaryDirectory(prefix="release-docs-") as tmp:
        site = Path(tmp) / "gx_docs"
        summary = quality.check_release(table, qcols, allowed, model_gates(project, model), docs=site)
        files = {f.relative_to(site).as_posix(): f.read_bytes() for f in sorted(site.rglob("*")) if f.is_file()}
    return {"summary": summary, "site": files}


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
    on = front(pts, {"size_bytes": "min", "quality": "max", "p50_ms": "min"}) if pts else []
    return [p for p, keep in zip(pts, on, strict=True) if keep]


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
    (a pool's own re-quantized file has no package)."""
    folder = project.stage_dir(model, "package")
    table = json.loads((folder / "package.json").read_text()) if (folder / "package.json").is_file() else {}
    out = {}
    for s in names:
        if s in table and files[s] == project.artifact(model, s):
            path = folder / f"{s}.mcpk"
            out[s] = {"path": path, "sha256": sha256_file(path), **table[s]}
    return out


def _package_entry(bucket: str, prefix: str, name: str, pk: dict[str, Any]) -> dict[str, Any]:
    return {
        "uri": f"s3://{bucket}/{prefix}/{name}/model.mcpk",
        "sha256": pk["sha256"],
        "bytes": pk["package_bytes"],
        "entropy_bound_bytes": pk["entropy_bound_bytes"],
        "coded_vs_bound": pk["coded_vs_bound"],
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
    where = pool_name or pool(project)
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


def _inputs(p: Project, m: str) -> dict[str, Path]:
    inputs = p.artifacts(m)
    inputs["validation"] = p.stage_dir(m, "validate") / "validation.json"
    inputs["bench"] = p.stage_dir(m, "benchmark") / "bench.json"  # int8 slower than fp32 is not published
    inputs["package"] = p.stage_dir(m, "package")  # transfer packages go beside the ONNX files
    return inputs


PUBLISH = Stage(
    name="publish",
    version=5,  # 5: regression gate and Pareto front in the manifest
    inputs=_inputs,
    params=lambda p, m: {
        "model": p.entry(m),
        "s3": p.params.get("s3"),
        "pool": pool(p),
        "regression": p.params.get("regression"),
        "gates": model_gates(p, m),
    },
    body=_body,
)


def publish(model: str, root: str = ".") -> dict[str, Any]:
    """Publish ``model``'s passing artifacts to S3; writes ``published.json``."""
    return PUBLISH.run(model, root)
