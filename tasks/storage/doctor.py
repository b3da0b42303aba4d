"""The S3 check of ``python -m flows.cli doctor`` (records and runner: tasks/core/doctor.py).

Two cases, as ``tasks/storage/s3.py`` sees them:

- a configured endpoint (``S3_ENDPOINT_URL`` in the environment, or params.yaml's
  ``s3.endpoint_url`` off loopback): it must answer, accept the credentials and hold every
  configured bucket (``s3.zoo_bucket``, ``publish_bucket``, ``dvc_bucket``, ``cache_bucket``);
- the embedded default (params.yaml's loopback endpoint, no ``S3_ENDPOINT_URL``): nothing
  need run, since the code that needs S3 starts SeaweedFS there and creates the buckets, so
  the check is that the ``weed`` binary is installed. A server already answering there is
  checked like a configured one, except that a missing bucket is no fault (created on first
  use); ``Options.start_s3`` starts the embedded server for the check.

Credentials are named by where they come from, never shown.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from tasks.core.doctor import REINSTALL, Options, Result
from tasks.core.project import Project
from tasks.storage import s3 as s3io
from tasks.storage import seaweed

MISSING = ("404", "NoSuchBucket", "NotFound")
REJECTED = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken")
# botocore's names for where credentials were found
SOURCES = {"env": "AWS_ACCESS_KEY_ID in the environment", "shared-credentials-file": "~/.aws/credentials",
           "config-file": "~/.aws/config", "iam-role": "the instance's IAM role"}  # fmt: skip
CREDENTIALS_FIX = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials), or name a Prefect Secret block "
    "in S3_CREDENTIALS_BLOCK"
)


def _where(settings: s3io.S3Settings) -> str:
    return settings.endpoint_url or f"AWS S3 ({settings.region})"


def _source() -> str:
    return "S3_ENDPOINT_URL" if os.environ.get("S3_ENDPOINT_URL") else "params.yaml s3.endpoint_url"


def credentials(settings: s3io.S3Settings) -> Result:
    """Where the S3 credentials come from (a fail when nowhere); their values are never read out."""
    name, block = "s3 credentials", os.environ.get("S3_CREDENTIALS_BLOCK")
    if block:
        return Result(name, True, f"from the Prefect Secret block {block!r} (S3_CREDENTIALS_BLOCK)")
    if settings.embedded and not os.environ.get("AWS_ACCESS_KEY_ID"):
        return Result(name, True, "the embedded server's local defaults (AWS_ACCESS_KEY_ID is not set)")
    found = boto3.session.Session().get_credentials()
    if found is None:
        return Result(name, False, f"none found for {_where(settings)}", CREDENTIALS_FIX)
    return Result(name, True, f"an access key id from {SOURCES.get(found.method, found.method)}")


def endpoint(s3: Any, settings: s3io.S3Settings) -> Result:
    """The endpoint answers and does not reject the credentials (ListBuckets)."""
    name = "s3 endpoint"
    try:
        s3.list_buckets()
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in REJECTED:
            return Result(name, False, str(s3io.explain(e, settings)), CREDENTIALS_FIX)
        if code != "AccessDenied":  # AccessDenied: an S3 that answers, to a key that may not list buckets
            fix = f"check {_source()}: is {_where(settings)} an S3 endpoint?"
            return Result(name, False, f"{_where(settings)} answers ListBuckets with {code}, not as S3 does", fix)
    except BotoCoreError as e:
        fix = f"start the S3 server at {_where(settings)}, or set {_source()} to one that runs"
        return Result(name, False, str(s3io.explain(e, settings)), fix)
    return Result(name, True, f"{_where(settings)} answers")


def bucket(s3: Any, settings: s3io.S3Settings, name: str, opts: Options, missing_ok: bool) -> Result:
    """Bucket ``name`` exists (HEAD); missing, it is created with ``opts.create_buckets``,
    and no fault when ``missing_ok`` (the embedded server: created on first use)."""
    line = f"s3 bucket {name}"
    try:
        s3.head_bucket(Bucket=name)
        return Result(line, True, "exists")
    except ClientError as e:
        if e.response.get("Error", {}).get("Code", "") not in MISSING:
            return Result(line, False, str(s3io.explain(e, settings, name)), f"give the credentials access to {name}")
    except BotoCoreError as e:
        return Result(line, False, str(s3io.explain(e, settings, name)), "see the s3 endpoint line")
    if opts.create_buckets:
        try:
            s3io.ensure_buckets(s3, settings, [name])
        except s3io.S3Error as e:
            return Result(line, False, f"missing, and not created: {e}", f"create {name} with a key that may")
        return Result(line, True, "created, versioning on (--create-buckets)")
    if missing_ok:
        return Result(line, True, "missing: created by the first run that uses the embedded S3")
    fix = "create it: python -m flows.cli doctor --create-buckets (versioning on), or with your S3's own tools"
    return Result(line, False, f"bucket {name!r} does not exist at {_where(settings)}", fix)


def served(settings: s3io.S3Settings, opts: Options, missing_ok: bool = False) -> list[Result]:
    """Credentials, endpoint and each configured bucket of a server that should answer."""
    creds = credentials(settings)
    if not creds.ok:
        return [creds]
    try:
        # a stopped endpoint fails in seconds: one try per request, short timeouts (seconds)
        s3 = s3io.client(settings, connect_timeout=2, read_timeout=5, attempts=1)
    except s3io.S3Error as e:  # a Prefect Secret block that is missing or malformed
        return [Result(creds.name, False, str(e), CREDENTIALS_FIX)]
    reached = endpoint(s3, settings)
    if not reached.ok:
        return [creds, reached]
    return [creds, reached, *(bucket(s3, settings, b, opts, missing_ok) for b in settings.buckets)]


def embedded(project: Project, settings: s3io.S3Settings, opts: Options) -> list[Result]:
    """The embedded default: a server answering there is checked; else the ``weed`` binary,
    and with ``opts.start_s3`` the server it starts."""
    url = urlparse(settings.endpoint_url)
    if seaweed.port_open(url.hostname or "127.0.0.1", url.port or 80, timeout=1.0):
        return served(settings, opts, missing_ok=True)
    try:
        weed = seaweed.weed_binary()
    except FileNotFoundError as e:
        return [Result("s3 embedded", False, str(e), f"reinstall the pinned stack: {REINSTALL}")]
    later = "" if opts.start_s3 else "; --start-s3 starts it to check it"
    ready = Result("s3 embedded", True, f"SeaweedFS ({weed}) starts on demand at {settings.endpoint_url}{later}")
    if not opts.start_s3:
        return [ready]
    try:
        with s3io.available(project) as (_, up):  # started, buckets created; stopped on leaving
            return [ready, *served(up, opts)]
    except s3io.S3Error as e:  # it started, and refused the credentials for its buckets
        return [ready, Result("s3 credentials", False, str(e), CREDENTIALS_FIX)]
    except (RuntimeError, TimeoutError) as e:
        log = project.data / ".s3" / "weed.log"
        return [Result("s3 embedded", False, f"SeaweedFS did not start: {e}", f"see {log}")]


def s3(opts: Options) -> list[Result]:
    """The S3 lines of the report: a configured endpoint, or the embedded default."""
    project = Project.at(opts.root)
    settings = s3io.S3Settings.from_project(project)
    if os.environ.get("S3_ENDPOINT_URL") or not settings.embedded:
        return served(settings, opts)
    return embedded(project, settings, opts)
