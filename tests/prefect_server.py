"""A real Prefect server and process workers for tests, started and stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PREFECT = str(Path(sys.executable).parent / "prefect")
REPO = Path(__file__).resolve().parents[1]


def end(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session: a worker needs two SIGTERMs; SIGKILL what lingers."""
    for _ in range(2):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class PrefectServer:
    """``prefect server start`` on loopback with its own PREFECT_HOME and SQLite file."""

    home: Path
    port: int
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{self.home / 'prefect.db'}",
            PREFECT_WORKER_QUERY_SECONDS="2",  # pick up runs quickly
            PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore",
            PIPELINE_ROOT=str(REPO),  # prefect.yaml's pull step: flows run in this checkout
        )
        return env

    def _spawn(self, args: list[str], log_name: str, root: Path = REPO) -> subprocess.Popen:
        log = open(self.home / log_name, "wb")  # noqa: SIM115  # closed with the process
        env = {**self.env, "PIPELINE_ROOT": str(root)}
        proc = subprocess.Popen(
            [PREFECT, *args], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 120, log_level: str = "WARNING") -> PrefectServer:
        """``log_level`` INFO logs every API request (uvicorn's access log) to server.log."""
        args = ["server", "start", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", log_level]
        proc = self._spawn(args, "server.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: {(self.home / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"prefect server did not answer in {timeout} s")

    def cli(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run([PREFECT, *args], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def worker(self, pool: str, timeout: float = 90, root: Path = REPO, name: str = "") -> subprocess.Popen:
        """A process worker on ``pool`` running flows in the checkout ``root`` (one flow run at
        a time when ``name`` is given: a simulated machine); returns once the server lists it online."""
        args = ["worker", "start", "--pool", pool, "--type", "process"]
        args += ["--name", name, "--limit", "1"] if name else []
        log_name = f"worker-{pool}{'-' + name if name else ''}.log"
        proc = self._spawn(args, log_name, root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited: {(self.home / log_name).read_text()[-2000:]}")
            listed = self.cli_api(f"/work_pools/{pool}/workers/filter")
            if '"status":"ONLINE"' in listed and (not name or f'"name":"{name}"' in listed):
                return proc
            time.sleep(1)
        raise TimeoutError(f"worker on {pool} did not come online in {timeout} s")

    def cli_api(self, path: str) -> str:
        req = urllib.request.Request(f"{self.api_url}{path}", data=b"{}", method="POST")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode().replace(" ", "")

    def stop(self) -> None:
        # Workers first, then the server
        for proc in reversed(self.procs):
            end(proc)
