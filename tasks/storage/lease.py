"""A lease per model on S3: one run at a time works on a model, across processes,
deployments and machines.

Two runs of one model at once (the nightly cron and a manual trigger from the UI) would
build into the same stage folders and publish over each other. A file lock would not hold
across machines with no shared disk; every run already shares the S3 it publishes to. So
the lock is an object, ``s3://<publish bucket>/_leases/<model>.json``, changed only by
compare-and-swap (S3 conditional writes: ``If-None-Match: *`` to take a free lease,
``If-Match: <etag>`` to renew, break or release one):

- it names its holder (run id, pid, host, boot id, start time), which a waiting run prints;
- it expires ``ttl_s`` after its last renewal; the holder renews it every ``ttl_s / 3``
  from a background thread, so a long stage never loses it;
- a run finding an expired lease, or one whose holder is a dead pid on this same boot,
  breaks it: only one breaker's conditional write can win.

``on_busy``: ``wait`` (default: poll until the holder is done, up to ``wait_s``) or
``skip`` (raise ``LeaseBusy`` at once, naming the holder).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import ClientError

from tasks.core.procs import boot_id, pid_alive
from tasks.storage.s3 import S3Settings

log = logging.getLogger("pipeline")
PREFIX = "_leases"
_CONFLICT = ("PreconditionFailed", "412", "ConditionalRequestConflict", "NoSuchKey", "404")


class LeaseBusy(RuntimeError):
    """Another live run holds the model's lease."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease. ``expires`` and ``started`` are Unix seconds."""

    run: str
    pid: int
    host: str
    boot_id: str
    started: float
    expires: float

    @classmethod
    def me(cls, run: str, ttl_s: float) -> Holder:
        now = time.time()
        return cls(run, os.getpid(), socket.gethostname(), boot_id(), now, now + ttl_s)

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"run {self.run} (pid {self.pid} on {self.host}, since {since})"

    def stale(self, now: float) -> str | None:
        """Why this lease may be broken, or None while its holder may still be working."""
        if now > self.expires:
            return f"expired {now - self.expires:.0f} s ago"
        if self.host == socket.gethostname() and self.boot_id == boot_id() and not pid_alive(self.pid):
            return f"its pid {self.pid} is gone"
        return None


# Leases this process holds: what a cancelled run releases.
HELD: set[Lease] = set()


class Lease:
    """A held lease; renewed in the background until ``release``."""

    def __init__(self, s3: Any, bucket: str, key: str, holder: Holder, etag: str, ttl_s: float) -> None:
        self.s3, self.bucket, self.key, self.holder, self.etag, self.ttl_s = s3, bucket, key, holder, etag, ttl_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{key}", daemon=True)
        self._thread.start()
        HELD.add(self)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            renewed = Holder(**{**asdict(self.holder), "expires": time.time() + self.ttl_s})
            try:
                r = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=_body(renewed), IfMatch=self.etag)
                self.etag, self.holder = r["ETag"], renewed
            except ClientError as e:
                log.error("lost the lease %s: %s", self.key, e)
                self.lost.set()
                return
            except Exception as e:  # S3 briefly unreachable: the lease holds until it expires
                log.warning("could not renew the lease %s (will retry): %s", self.key, e)

    def release(self) -> None:
        HELD.discard(self)
        self._stop.set()
        self._thread.join(timeout=5)
        if self.lost.is_set():
            return
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except Exception as e:  # it expires on its own
            log.warning("could not release the lease %s: %s", self.key, e)


def _body(holder: Holder) -> bytes:
    return json.dumps(asdict(holder), sort_keys=True).encode()


def _read(s3: Any, bucket: str, key: str) -> tuple[Holder, str] | None:
    try:
        got = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return Holder(**json.loads(got["Body"].read())), got["ETag"]


def _try(s3: Any, bucket: str, key: str, mine: Holder) -> tuple[str | None, Holder | None]:
    """One attempt: (our etag, None) on success, else (None, the live holder)."""
    try:
        return s3.put_object(Bucket=bucket, Key=key, Body=_body(mine), IfNoneMatch="*")["ETag"], None
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in _CONFLICT:
            raise
    current = _read(s3, bucket, key)
    if current is None:
        return None, None  # released meanwhile: try again at once
    holder, etag = current
    why = holder.stale(time.time())
    if why is None:
        return None, holder
    try:  # break it: only one breaker's conditional write succeeds
        r = s3.put_object(Bucket=bucket, Key=key, Body=_body(mine), IfMatch=etag)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in _CONFLICT:
            return None, None
        raise
    log.warning("broke the lease on %s held by %s: %s", key, holder.describe(), why)
    return r["ETag"], None


@contextmanager
def held(
    s3: Any,
    settings: S3Settings,
    model: str,
    run: str = "",
    on_busy: str = "wait",
    ttl_s: float = 300.0,
    wait_s: float = 4 * 3600.0,
    poll_s: float = 5.0,
) -> Iterator[Lease]:
    """Hold ``model``'s lease for the block (see the module docstring).

    Args:
        run: this run's id (a Prefect flow-run id; default ``pid-<pid>-<random>``).
        on_busy: ``wait`` or ``skip`` (raise ``LeaseBusy`` at once).
        ttl_s: lease lifetime without renewal, seconds (default 300).
        wait_s: longest wait for a busy lease, seconds (default 4 h), then ``LeaseBusy``.
        poll_s: seconds between attempts while waiting (default 5).
    """
    if on_busy not in ("wait", "skip"):
        raise ValueError(f"on_busy must be 'wait' or 'skip', got {on_busy!r}")
    bucket, key = settings.publish_bucket, f"{PREFIX}/{model}.json"
    mine = Holder.me(run or f"pid-{os.getpid()}-{uuid.uuid4().hex[:6]}", ttl_s)
    deadline, told = time.monotonic() + wait_s, None
    while True:
        mine = Holder(**{**asdict(mine), "expires": time.time() + ttl_s})
        etag, holder = _try(s3, bucket, key, mine)
        if etag is not None:
            break
        if holder is not None:
            if on_busy == "skip":
                raise LeaseBusy(f"{model} is being compressed by {holder.describe()}: skipped (on_busy=skip)")
            if time.monotonic() > deadline:
                raise LeaseBusy(f"{model} still held by {holder.describe()} after waiting {wait_s:.0f} s")
            if told != holder.run:
                log.warning("%s is being compressed by %s: waiting (on_busy=wait)", model, holder.describe())
                told = holder.run
            time.sleep(poll_s)
    log.info("took the lease on %s as %s%s", model, mine.run, " (the other run is done)" if told else "")
    lease = Lease(s3, bucket, key, mine, etag, ttl_s)
    try:
        yield lease
    finally:
        lease.release()
