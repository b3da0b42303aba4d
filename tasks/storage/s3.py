"""S3 access through boto3: settings, a client with retries, clear errors, the embedded server.

Works against any S3 by endpoint URL (AWS, MinIO, Ceph, SeaweedFS). Credentials come from
the standard AWS chain (environment, config files); for the embedded server only, the
documented local defaults apply when the environment sets none. Credentials are never
logged or written to a record.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tasks.core.project import Project
from tasks.storage import S3_UP_ENV, seaweed

log = logging.getLogger("pipeline")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
T = TypeVar("T")


class S3Error(RuntimeError):
    """An S3 failure explained in words: unreachable, bad credentials, missing bucket..."""


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str
    region: str
    zoo_bucket: str
    publish_bucket: str
    dvc_bucket: str = "dvc-store"
    cache_bucket: str = ""  # the stage cache (stage_cache.py); empty: none
    retry_budget_s: float = 30.0  # how long connection failures are retried before giving up

    @classmethod
    def from_project(cls, project: Project) -> S3Settings:
        s3 = project.params.get("s3") or {}
        return cls(
            # set but empty is AWS's own endpoint for the region, not params.yaml's loopback default
            endpoint_url=os.environ.get("S3_ENDPOINT_URL", s3.get("endpoint_url", "")),
            region=os.environ.get("AWS_DEFAULT_REGION") or s3.get("region", "us-east-1"),
            zoo_bucket=s3.get("zoo_bucket", "model-zoo"),
            publish_bucket=s3.get("publish_bucket", "compressed-models"),
            dvc_bucket=s3.get("dvc_bucket", "dvc-store"),
            cache_bucket=s3.get("cache_bucket") or "",
        )

    @property
    def buckets(self) -> list[str]:
        cache = [self.cache_bucket] if self.cache_bucket else []
        return [self.zoo_bucket, self.publish_bucket, self.dvc_bucket, *cache]

    @property
    def embedded(self) -> bool:
        """True when the endpoint is on loopback: the pipeline may start SeaweedFS there."""
        return urlparse(self.endpoint_url).hostname in LOOPBACK


def shared_client(settings: S3Settings) -> Any:
    """The process's one client for ``settings`` and the credentials in effect, for every
    stage: a client per stage would cost a session, a credential lookup and a connection
    pool each, hundreds of times in a nightly of many models. Keyed by the credentials'
    source too, so a rotated or corrected key gets a new client."""
    return _shared(settings, os.environ.get("S3_CREDENTIALS_BLOCK", ""), os.environ.get("AWS_ACCESS_KEY_ID", ""))


@functools.lru_cache(maxsize=8)
def _shared(settings: S3Settings, block: str, access_key: str) -> Any:
    return client(settings)


def client(settings: S3Settings, connect_timeout: float = 3, read_timeout: float = 60, attempts: int = 2) -> Any:
    """A boto3 S3 client; botocore retries transient errors with exponential backoff, up to
    ``attempts`` tries per request; timeouts in seconds (a health check passes short ones)."""
    kwargs: dict[str, Any] = {}
    if os.environ.get("S3_CREDENTIALS_BLOCK"):
        kwargs = credentials_from_block(os.environ["S3_CREDENTIALS_BLOCK"])
    elif settings.embedded and not os.environ.get("AWS_ACCESS_KEY_ID"):
        kwargs = {"aws_access_key_id": seaweed.DEFAULT_ACCESS_KEY, "aws_secret_access_key": seaweed.DEFAULT_SECRET_KEY}
    config = Config(
        retries={"mode": "standard", "max_attempts": attempts},  # connection retries: see _call
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A fresh session per client: boto3's default session caches the first credentials it
    # resolves, which would hide a rotated or corrected key for the rest of the process.
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=settings.endpoint_url or None, region_name=settings.region, config=config, **kwargs
    )


def credentials_from_block(name: str) -> dict[str, str]:
    """Keys from a Prefect ``Secret`` block holding JSON ``{"aws_access_key_id": ...,
    "aws_secret_access_key": ...}``: how a deployment gets credentials without env vars."""
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()  # type: ignore[union-attr]  # sync in a sync context
    except ValueError as e:
        raise S3Error(f"Prefect Secret block {name!r} (from S3_CREDENTIALS_BLOCK) not found") from e
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, dict) or not {"aws_access_key_id", "aws_secret_access_key"} <= set(data):
        raise S3Error(f"Prefect Secret block {name!r} must hold aws_access_key_id and aws_secret_access_key")
    return {"aws_access_key_id": data["aws_access_key_id"], "aws_secret_access_key": data["aws_secret_access_key"]}


def explain(e: Exception, settings: S3Settings, bucket: str = "", key: str = "") -> S3Error:
    """Turn a botocore exception into an S3Error whose message names the cause."""
    where = f"s3://{bucket}/{key}" if bucket else settings.endpoint_url
    if isinstance(e, EndpointConnectionError) or (isinstance(e, BotoCoreError) and "connect" in str(e).lower()):
        return S3Error(f"S3 endpoint {settings.endpoint_url} is unreachable ({type(e).__name__})")
    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "")
        if code in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "InvalidToken",
            "ExpiredToken",
            "403",
        ):
            return S3Error(f"S3 at {settings.endpoint_url} rejected the credentials ({code}) for {where}")
        if code in ("NoSuchBucket",):
            return S3Error(f"S3 bucket {bucket!r} does not exist at {settings.endpoint_url}")
        if code in ("NoSuchKey", "404"):
            return S3Error(f"no object at {where}")
        return S3Error(f"S3 error {code} for {where}: {e}")
    return S3Error(f"S3 failure for {where}: {e}")


def ensure_buckets(s3: Any, settings: S3Settings, buckets: list[str]) -> None:
    for b in buckets:
        try:
            s3.head_bucket(Bucket=b)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise explain(e, settings, b) from e
            try:
                s3.create_bucket(Bucket=b)
            except ClientError as race:  # another run created it between our HEAD and CREATE
                if race.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise explain(race, settings, b) from race
                continue
            s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
            log.info("created bucket s3://%s", b)


@contextmanager
def available(project: Project) -> Iterator[tuple[Any, S3Settings]]:
    """Yield (client, settings); start the embedded SeaweedFS for the block if the endpoint
    is on loopback and nothing answers there yet (then also create the buckets). Child
    processes started meanwhile see the endpoint in ``S3_UP_ENV`` (the stage cache uses S3 only there)."""
    settings = S3Settings.from_project(project)
    before = os.environ.get(S3_UP_ENV)
    os.environ[S3_UP_ENV] = settings.endpoint_url
    try:
        if settings.embedded:
            port = urlparse(settings.endpoint_url).port or 80
            with seaweed.shared(project.data / ".s3", port):  # started if needed, stopped by its last user
                s3 = shared_client(settings)
                ensure_buckets(s3, settings, settings.buckets)
                yield s3, settings
        else:
            yield shared_client(settings), settings
    finally:
        if before is None:
            os.environ.pop(S3_UP_ENV, None)
        else:
            os.environ[S3_UP_ENV] = before


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/prefix`` -> (bucket, key prefix without trailing slash)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.strip("/")


CONNECTION_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


def _call(settings: S3Settings, bucket: str, key: str, op: Callable[[], T]) -> T:
    """Run one S3 operation, retrying connection failures with exponential backoff (0.5 s,
    doubling, at most 8 s apart) for up to ``settings.retry_budget_s`` seconds: a server that
    restarts mid-publish is waited for. Other errors are explained at once."""
    delay, deadline = 0.5, time.monotonic() + settings.retry_budget_s
    while True:
        try:
            return op()
        except (BotoCoreError, ClientError, boto3.exceptions.S3UploadFailedError) as e:
            # s3transfer wraps the real failure of an upload; judge that one.
            cause = e.__cause__ if isinstance(e, boto3.exceptions.S3UploadFailedError) else e
            cause = cause if isinstance(cause, Exception) else e
            if not isinstance(cause, CONNECTION_ERRORS) or time.monotonic() + delay > deadline:
                raise explain(cause, settings, bucket, key) from e
            log.warning(
                "S3 %s unreachable (%s); retrying in %.1f s", settings.endpoint_url, type(cause).__name__, delay
            )
            time.sleep(delay)
            delay = min(2 * delay, 8.0)


def upload_file(s3: Any, settings: S3Settings, path: Path, bucket: str, key: str) -> None:
    _call(settings, bucket, key, lambda: s3.upload_file(str(path), bucket, key))


def download_file(s3: Any, settings: S3Settings, bucket: str, key: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _call(settings, bucket, key, lambda: s3.download_file(bucket, key, str(path)))


def download_uri(s3: Any, settings: S3Settings, uri: str, dest: Path) -> None:
    """``s3://bucket/key`` to the file ``dest``; a prefix ending in ``/`` (a folder, e.g. an
    image folder) to the folder ``dest``, every object below it. An empty prefix is an error."""
    bucket, key = parse_uri(uri)
    if not uri.endswith("/"):
        download_file(s3, settings, bucket, key, dest)
        return
    keys = list_keys(s3, settings, bucket, key + "/")
    if not keys:
        raise FileNotFoundError(f"{uri} holds no objects")
    for k in keys:
        download_file(s3, settings, bucket, k, dest / k[len(key) + 1 :])


MISSING = ("NoSuchKey", "404", "NotFound")


def _none_if_missing(settings: S3Settings, bucket: str, key: str, fetch: Callable[[], T]) -> T | None:
    """``fetch()`` with retries; None when the object does not exist."""

    def op() -> T | None:
        try:
            return fetch()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in MISSING:
                return None
            raise

    return _call(settings, bucket, key, op)


def get_bytes(s3: Any, settings: S3Settings, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None if it does not exist."""
    return _none_if_missing(settings, bucket, key, lambda: bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def get_head(s3: Any, settings: S3Settings, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's metadata (HEAD), or None if it does not exist."""
    return _none_if_missing(settings, bucket, key, lambda: dict(s3.head_object(Bucket=bucket, Key=key)))


def list_keys(s3: Any, settings: S3Settings, bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix`` (all pages), sorted."""

    def op() -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    return _call(settings, bucket, prefix, op)


def put_bytes(s3: Any, settings: S3Settings, bucket: str, key: str, data: bytes) -> None:
    _call(settings, bucket, key, lambda: s3.put_object(Bucket=bucket, Key=key, Body=data))


def put_if_absent(s3: Any, settings: S3Settings, bucket: str, key: str, data: bytes) -> bool:
    """Create the object only if no object has the key (S3 conditional write, If-None-Match: *).

    Returns False when another writer got there first; two concurrent publishers of one
    version therefore cannot both write its manifest.
    """

    def op() -> bool:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise

    return _call(settings, bucket, key, op)
