"""``python -m flows.cli doctor``: the Prefect checks and the command's report and exit code.

The work pools against a real server are in test_pools.py, which starts that server anyway."""

import time
from pathlib import Path

import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from flows.cli import app
from flows.doctor import CHECKS, prefect_api, work_pools
from tasks.core.doctor import Options, Result
from tasks.core.project import Project
from tasks.storage import s3 as s3io
from tasks.storage.seaweed import free_port

runner = CliRunner()


def with_params(root: Path, **changes: object) -> Path:
    params = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump({**params, **changes}))
    return root


def test_every_check_is_listed_once_in_report_order():
    assert list(CHECKS) == ["catalogue", "pins", "disk", "s3", "prefect api", "work pools"]


def test_the_ephemeral_api_passes_and_remote_targets_then_fail(tiny_project: Path):
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert prefect_api(Options(tiny_project)) == [
            Result("prefect api", True, "PREFECT_API_URL is not set: each run starts an ephemeral API")
        ]
        [local] = work_pools(Options(tiny_project))
        assert local.ok and local.detail == "no Prefect server: runs serve this machine only (not checked)"
        pools = {"local": {"work_pool": None}, "cpu-avx2": {"work_pool": "cpu-avx2"}}
        remote = with_params(tiny_project, pools=pools, targets=["local", "cpu-avx2"])
        [needs] = work_pools(Options(remote))
    assert not needs.ok and needs.detail == "targets ['cpu-avx2'] need workers on a Prefect server: none is set"
    assert needs.fix.startswith("set PREFECT_API_URL")


def test_a_prefect_server_that_does_not_answer_fails_in_seconds(tiny_project: Path):
    url = f"http://127.0.0.1:{free_port()}/api"
    start = time.monotonic()
    with temporary_settings({PREFECT_API_URL: url}):
        [api] = prefect_api(Options(tiny_project))
        [pools] = work_pools(Options(tiny_project))
    assert time.monotonic() - start < 10
    assert not api.ok and api.detail.startswith(f"{url}/health fails: ConnectError")
    assert api.fix.startswith("start the server (prefect server start)")
    assert pools == Result("work pools", False, f"not checked: {url}/health fails", "see the prefect api line")


def doctor(root: Path) -> object:
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        return runner.invoke(app, ["doctor", "--root", str(root)], terminal_width=200)


def test_the_command_passes_when_all_is_well_and_exits_1_on_a_stopped_s3(tiny_project: Path, s3_server, monkeypatch):
    root = with_params(tiny_project, doctor={"min_free_gib": 0.001})
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.endpoint_url)
    st = s3io.S3Settings.from_project(Project.at(root))
    s3io.ensure_buckets(s3io.client(st), st, st.buckets)
    well = doctor(root)
    assert well.exit_code == 0, well.output
    assert "FAIL" not in well.output and well.output.rstrip().endswith(" passed")
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("S3_ENDPOINT_URL", closed)
    stopped = doctor(root)
    assert stopped.exit_code == 1
    failed = [line for line in stopped.output.splitlines() if line.startswith("FAIL")]
    assert failed == [f"FAIL  s3 endpoint     S3 endpoint {closed} is unreachable (EndpointConnectionError)"]
    assert f"fix: start the S3 server at {closed}, or set S3_ENDPOINT_URL to one that runs" in stopped.output
    assert stopped.output.rstrip().endswith(" passed, 1 failed")
