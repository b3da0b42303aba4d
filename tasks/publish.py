"""Stage ``publish``: upload passing artifacts and their manifest to S3 under a versioned key.

Layout: ``s3://<publish_bucket>/<model>/<version>/<artifact>/model.onnx``, then
``<model>/<version>/manifest.json`` (written last: a version without a manifest is
incomplete), then the ``<model>/latest.json`` pointer. ``version`` is derived from the
artifacts' sha256 and the model's params, not from a clock: republishing the same content
is a no-op, and different content under an existing version is an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

from model_compression.hashing import sha256_file, sha256_json
from tasks import s3 as s3io
from tasks.project import ARTIFACT_STAGES, Project
from tasks.stage import Stage, library_versions

log = logging.getLogger("pipeline")


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


def _rows(project: Project, model: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((project.stage_dir(model, "validate") / "validation.json").read_text())[
        "rows"
    ]
    return rows


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    rows = {r["artifact"]: r for r in _rows(project, model)}
    bench = json.loads((project.stage_dir(model, "benchmark") / "bench.json").read_text())
    passed = [s for s in ARTIFACT_STAGES[1:] if rows[s]["passed"]]
    if not passed:
        log.warning("%s: no artifact passed validation; nothing published", model)
        (out / "published.json").write_text(json.dumps({"version": None, "artifacts": {}}, indent=2) + "\n")
        return {"version": None, "published": []}
    hashes = {s: sha256_file(project.artifact(model, s)) for s in passed}
    version = sha256_json({"model": model, "artifacts": hashes, "params": project.entry(model)})[:16]
    with s3io.available(project) as (s3, settings):
        bucket = settings.publish_bucket
        prefix = f"{model}/{version}"
        uris = {s: f"s3://{bucket}/{prefix}/{s}/model.onnx" for s in passed}
        existing = s3io.get_bytes(s3, settings, bucket, f"{prefix}/manifest.json")
        if existing is not None:
            old = json.loads(existing)
            if {k: v["sha256"] for k, v in old["artifacts"].items()} != hashes:
                raise ValueError(
                    f"s3://{bucket}/{prefix} already holds different content; refusing to overwrite a published version"
                )
            log.info("%s version %s already published with the same content", model, version)
        else:
            for s in passed:
                key = f"{prefix}/{s}/model.onnx"
                s3io.upload_file(s3, settings, project.artifact(model, s), bucket, key)
                back = s3io.get_bytes(s3, settings, bucket, key)
                if back is None or hashlib.sha256(back).hexdigest() != hashes[s]:
                    raise ValueError(f"read-back sha256 of s3://{bucket}/{key} does not match the artifact")
            fp32 = rows["baseline"]
            manifest = {
                "model": model,
                "version": version,
                "git_sha": git_sha(project.root),
                "flow_run_id": flow_run_id(),
                "params": project.entry(model),
                "seed": project.seed,
                "threads": project.threads,
                "versions": library_versions(),
                "fingerprint": bench["fingerprint"],
                "baseline": {
                    "size_bytes": fp32["size_bytes"],
                    "sha256": sha256_file(project.artifact(model, "baseline")),
                },
                "artifacts": {
                    s: {
                        "uri": uris[s],
                        "sha256": hashes[s],
                        "metrics": rows[s],
                        "latency": bench["results"][s],
                    }
                    for s in passed
                },
            }
            s3io.put_bytes(
                s3,
                settings,
                bucket,
                f"{prefix}/manifest.json",
                json.dumps(manifest, indent=2, sort_keys=True, default=str).encode(),
            )
            log.info("%s: published version %s (%d artifacts)", model, version, len(passed))
        s3io.put_bytes(s3, settings, bucket, f"{model}/latest.json", json.dumps({"version": version}).encode())
    (out / "published.json").write_text(
        json.dumps({"version": version, "artifacts": uris}, indent=2, sort_keys=True) + "\n"
    )
    return {"version": version, "published": passed}


def _inputs(p: Project, m: str) -> dict[str, Path]:
    inputs = {s: p.artifact(m, s) for s in ARTIFACT_STAGES}
    inputs["validation"] = p.stage_dir(m, "validate") / "validation.json"
    return inputs


PUBLISH = Stage(
    name="publish",
    version=1,
    inputs=_inputs,
    params=lambda p, m: {"model": p.entry(m), "s3": p.params.get("s3")},
    body=_body,
)


def publish(model: str, root: str = ".") -> dict[str, Any]:
    """Publish ``model``'s passing artifacts to S3; writes ``published.json``."""
    return PUBLISH.run(model, root)
