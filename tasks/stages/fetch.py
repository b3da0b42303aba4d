"""Stage ``fetch``: bring a model (or the dataset it is trained on) into ``data/``.

From the zoo: download what the entry's MANIFEST.json lists and verify every sha256.
A kind that names its files one by one (``custom``: the model and its eval files, each
with a sha256 in the entry) has each downloaded or copied and checked.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from model_compression.hashing import sha256_file, sha256_tree
from tasks.core.project import Project
from tasks.core.stage import Stage
from tasks.kinds.base import FileRef
from tasks.storage import s3 as s3io
from tasks.storage.sources import MANIFEST, files_of, local_folder

log = logging.getLogger("pipeline")


def _copy_local(uri: str, dest: Path) -> None:
    src = local_folder(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        shutil.copyfile(src, dest)


def fetch_files(project: Project, model: str, refs: list[FileRef], out: Path) -> dict[str, Any]:
    """Download (or copy) every file an entry names into ``out`` and verify its sha256."""
    remote = [r for r in refs if r.uri.startswith("s3://")]
    for ref in refs:
        if not ref.uri.startswith("s3://"):
            _copy_local(ref.uri, out / ref.local)
    if remote:
        with s3io.available(project) as (s3, settings):
            for ref in remote:
                s3io.download_uri(s3, settings, ref.uri, out / ref.local)  # a prefix ending in /: a folder
    for ref in refs:
        got = sha256_tree(out / ref.local)
        if got != ref.sha256:
            raise ValueError(
                f"checksum mismatch for {model} {ref.role} {ref.uri}: catalogue says {ref.sha256[:12]}, "
                f"file is {got[:12]}"
            )
    log.info("fetched %s: %s (sha256 verified)", model, ", ".join(r.role for r in refs))
    return {"files": {r.role: {"uri": r.uri, "sha256": r.sha256} for r in refs}}


def fetch_zoo(project: Project, uri: str, out: Path) -> dict[str, Any]:
    """Download what a zoo entry's manifest lists (or copy a local source) and verify it."""
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
            raise FileNotFoundError(f"{uri}/{MANIFEST} not found: the model zoo has no complete entry for it")
        manifest: dict[str, str] = json.loads(raw)
        for rel, digest in manifest.items():
            s3io.download_file(s3, settings, bucket, f"{prefix}/{rel}", out / rel)
            got = sha256_file(out / rel)
            if got != digest:
                raise ValueError(f"checksum mismatch for {uri}/{rel}: manifest {digest[:12]}, downloaded {got[:12]}")
    log.info("fetched %s (%d files, sha256 verified)", uri, len(manifest))
    return {"uri": uri, "files": manifest}


def _eval_files(project: Project, model: str) -> list[str]:
    """A kind that names its files one by one names the eval files (and sha256s) in ``eval``."""
    return ["model.eval"] if project.kind(model).files(project, model) is not None else []


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    kind = project.kind(model)
    refs = kind.files(project, model)
    return (
        fetch_zoo(project, kind.source(project, model), out) if refs is None else fetch_files(project, model, refs, out)
    )


STAGE = Stage(
    name="fetch",
    body=_body,
    inputs=lambda p, m: {"zoo": p.stage_dir(m, "zoo") / "manifest.json"},
    params=lambda p, m: ["model.kind", "model.source", *_eval_files(p, m)],
)
