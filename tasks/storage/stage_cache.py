"""Stage outputs shared through S3, addressed by the stage key: built once, anywhere.

A stage's key (``Stage.key``) is the sha256 of everything its output depends on: the
sha256 of each input, the params it reads, the code it runs, the kernel pins and the
machine's int8 preset. A machine that computes a key some other machine has built fetches
that output instead of building it:

    s3://<cache_bucket>/<key[:2]>/<key>/record.json          the builder's stage record
    s3://<cache_bucket>/<key[:2]>/<key>/<sha256 of tar>.tar  the output folder

The tar goes up first and the record, which names it, last: a record is only ever seen
beside the complete tar it names, and two builders of one key cannot pair one's record
with the other's tar. A fetched folder is unpacked into a partial folder, every file is
checked against the sha256s of the record, and only then is it swapped in (the runner's
own commit); anything that does not check out is ignored, with a warning, and the stage
is built. Files stream to and from disk, so memory stays bounded by the S3 transfer
buffers whatever the size of an output.

Why the project's own cache rather than DVC's run-cache: the run-cache keys a stage on its
command, deps and params, and the code a stage runs reaches DVC only as the files listed
in ``deps``; the stage key here already covers the code set, the kernel pins and the
int8 preset, and the runner checks it before every stage, inside Prefect and under
``dvc repro`` alike. DVC's remote still holds the versions ``dvc.lock`` records
(``make push``).

The cache is on where the pipeline has made S3 available (``s3.available`` marks its
process tree) and params.yaml names ``s3.cache_bucket``; ``PIPELINE_STAGE_CACHE=off``
turns it off for one run.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from model_compression.hashing import sha256_file
from tasks.core.project import Project
from tasks.core.stage import Stage, commit, discard, output_hashes, partial
from tasks.storage import S3_UP_ENV
from tasks.storage import s3 as s3io

log = logging.getLogger("pipeline")


def settings_if_on(project: Project) -> s3io.S3Settings | None:
    """The S3 settings when the stage cache is on in this process, else None."""
    settings = s3io.S3Settings.from_project(project)
    if not settings.cache_bucket or os.environ.get("PIPELINE_STAGE_CACHE", "").lower() == "off":
        return None
    return settings if os.environ.get(S3_UP_ENV) == settings.endpoint_url else None


def prefix(key: str) -> str:
    return f"{key[:2]}/{key}"


def run(stage: Stage, model: str, root: str | Path = ".") -> dict[str, Any]:
    """``stage.run`` with the S3 stage cache: a current local output first, then the
    cache, then a build, whose output is pushed to the cache."""
    project = Project.at(root)
    settings = settings_if_on(project)
    if settings is None or stage.up_to_date(project, model) is not None:
        return stage.run(model, root)
    key, out = stage.key(project, model)[0], project.stage_dir(model, stage.name)
    s3 = s3io.shared_client(settings)
    try:
        fetched = fetch(s3, settings, out, key)
    except s3io.S3Error as e:  # the cache is an optimisation: a build does not wait on it
        log.warning("stage cache unavailable (%s): building %s/%s here", e, model, stage.name)
        return stage.run(model, root)
    if fetched is not None:
        return fetched
    record = stage.run(model, root)
    try:
        push(s3, settings, out, record)
    except s3io.S3Error as e:
        log.warning("stage cache: %s/%s not pushed (%s)", model, stage.name, e)
    return record


def fetch(s3: Any, settings: s3io.S3Settings, out: Path, key: str) -> dict[str, Any] | None:
    """Put the cached output of ``key`` in place at ``out``; its record, or None (not cached
    or not intact: the caller builds)."""
    bucket = settings.cache_bucket
    raw = s3io.get_bytes(s3, settings, bucket, f"{prefix(key)}/record.json")
    if raw is None:
        return None
    record = json.loads(raw)
    tmp = partial(out)
    try:
        tar = tmp.with_name(f"{tmp.name}.tar")
        s3io.download_file(s3, settings, bucket, f"{prefix(key)}/{record['tar']}", tar)
        try:
            if sha256_file(tar) != record["tar"].removesuffix(".tar"):
                log.warning("stage cache: %s/%s is not the tar its record names; building", bucket, prefix(key))
                discard(tmp)
                return None
            with tarfile.open(tar) as t:
                t.extractall(tmp, filter="data")  # plain files and folders, nothing outside tmp
        finally:
            tar.unlink(missing_ok=True)
        if output_hashes(tmp) != record["outputs"] or record.get("key") != key:
            log.warning("stage cache: %s/%s does not match its record; building", bucket, prefix(key))
            discard(tmp)
            return None
    except BaseException:
        discard(tmp)
        raise
    record = {**record, "fetched_from": f"s3://{bucket}/{prefix(key)}"}
    commit(tmp, out, record)
    log.info("%s/%s: fetched from the stage cache (key %s), not built", out.parent.name, out.name, key[:12])
    return record


def push(s3: Any, settings: s3io.S3Settings, out: Path, record: dict[str, Any]) -> bool:
    """Upload the output at ``out`` under its record's key unless the cache has it; True if uploaded."""
    bucket, key = settings.cache_bucket, record["key"]
    if s3io.get_head(s3, settings, bucket, f"{prefix(key)}/record.json") is not None:
        return False  # built elsewhere too, or pushed by a pinned child process already
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.push-") as scratch:
        tar = Path(scratch) / "outputs.tar"
        _tar(out, tar)
        name = f"{sha256_file(tar)}.tar"
        s3io.upload_file(s3, settings, tar, bucket, f"{prefix(key)}/{name}")
    body = {k: v for k, v in record.items() if k != "fetched_from"}
    s3io.put_bytes(s3, settings, bucket, f"{prefix(key)}/record.json", json.dumps({**body, "tar": name}).encode())
    log.info("%s/%s: pushed to the stage cache (key %s)", out.parent.name, out.name, key[:12])
    return True


def _tar(folder: Path, dst: Path) -> None:
    """A tar of ``folder``'s files in name order, without owners or times: the same folder
    gives the same bytes on any machine."""

    def plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as t:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                t.add(path, arcname=str(path.relative_to(folder)), recursive=False, filter=plain)
