"""The embedded SeaweedFS: it starts even when a chosen port is taken first, overlapping
runs share one server by reference, the last one out stops it, and a run that found the
server running (someone else's, or owned by a run that was killed) does the right thing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.storage import seaweed
from tasks.storage.seaweed import free_port, port_open, shared


def _answering(port: int) -> bool:
    return port_open("127.0.0.1", port)


def test_a_port_taken_before_seaweedfs_binds_it_does_not_fail_the_start(tmp_path: Path, monkeypatch, caplog):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    handed = iter([taken.getsockname()[1]])  # the first port handed out is already in use
    real = seaweed.free_port
    monkeypatch.setattr(seaweed, "free_port", lambda: next(handed, None) or real())
    port = real()
    try:
        with shared(tmp_path / "s3", port):
            assert _answering(port)
        assert "retrying with fresh ports" in caplog.text and str(taken.getsockname()[1]) in caplog.text
        assert not _answering(port)
    finally:
        taken.close()


def test_runs_share_the_server_and_the_last_one_out_stops_it(tmp_path: Path):
    port = free_port()
    with shared(tmp_path / "s3", port):
        pid = json.loads((tmp_path / "s3/server.json").read_text())["pid"]
        with shared(tmp_path / "s3", port):  # a second run joins: no second server
            assert json.loads((tmp_path / "s3/server.json").read_text())["pid"] == pid
            assert len(seaweed.live_owners(tmp_path / "s3")) == 2
        assert _answering(port)  # the first run still uses it
    assert not _answering(port) and not (tmp_path / "s3/server.json").exists()


def test_a_run_that_found_someone_elses_server_leaves_it_running(tmp_path: Path, s3_server):
    with shared(tmp_path / "s3", s3_server.s3_port):
        assert _answering(s3_server.s3_port) and not (tmp_path / "s3/server.json").exists()
    assert _answering(s3_server.s3_port)


def test_a_server_whose_owners_were_killed_is_adopted_and_stopped_by_the_next_run(tmp_path: Path):
    port = free_port()
    data = tmp_path / "s3"
    # a run that starts the server and is SIGKILLed: its registration stays, its pid is gone
    code = (
        "import os, sys; from pathlib import Path; from tasks.storage.seaweed import shared\n"
        f"ctx = shared(Path({str(data)!r}), {port}); ctx.__enter__(); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])
    assert _answering(port) and len(list((data / "owners").iterdir())) == 1  # orphaned
    with shared(data, port):
        assert seaweed.live_owners(data) and len(list((data / "owners").iterdir())) == 1  # the dead one dropped
    assert not _answering(port), "the orphaned server outlived the next run"


@pytest.fixture(autouse=True)
def _no_leftovers():
    yield
    assert not seaweed.JOINED
