"""The per-model dispatch: its refusals before anything is sent to a work pool, and how it
watches the runs it sent (against a real ``prefect server start``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from flows.per_model import DispatchConfig, dispatch, states, wait
from tests.conftest import make_project


def test_a_timeout_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match=r"dispatch.timeout_s must be > 0, got 0"):
        DispatchConfig(timeout_s=0)


def test_dispatch_without_the_stage_cache_is_refused_naming_the_setting(tmp_path: Path):
    """Machines share nothing but S3: without the cache a worker's outputs could not reach this checkout."""
    params = {"models": {}, "s3": {"endpoint_url": "http://127.0.0.1:9", "cache_bucket": None}}
    root = make_project(tmp_path, params)
    with pytest.raises(ValueError, match=r"dispatch needs the S3 stage cache: set s3.cache_bucket in params.yaml"):
        dispatch(["m"], str(root), publish=True, on_busy="wait")


@pytest.mark.slow
def test_each_run_lands_as_it_completes_and_a_failed_fetch_is_named_while_the_rest_are_watched(prefect_server: Any):
    """The dispatcher fetches a model's outputs when its run completes, not after the last
    one; a fetch that fails is that model's failure, and the other runs are still watched."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Completed, Failed

    @flow(name="wait-probe")
    def probe() -> None:
        return None

    landed: list[tuple[str, bool]] = []
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}), get_client(sync_client=True) as client:
        ids = {m: client.create_flow_run(probe, name=f"wait-{m}").id for m in ("a", "b", "c")}

        def land(model: str) -> None:
            others = states(client, {m: i for m, i in ids.items() if m != model})
            landed.append((model, any(s.is_final() for s in others.values())))
            if model == "a":  # the others finish only after a has landed
                client.set_flow_run_state(ids["b"], Completed(), force=True)
                client.set_flow_run_state(ids["c"], Failed(message="boom"), force=True)
            else:
                raise OSError("no space left on device")

        client.set_flow_run_state(ids["a"], Completed(), force=True)
        failed = wait(ids, timeout_s=60, on_complete=land)
    assert landed == [("a", False), ("b", True)]  # a landed while b and c were still running
    assert set(failed) == {"b", "c"}
    assert re.fullmatch(r"run \S+ completed, but materialising it here failed: no space left on device", failed["b"])
    assert re.fullmatch(r"run \S+ ended Failed: boom", failed["c"])
