"""Retries around I/O only, and only for failures that may pass next time."""

from __future__ import annotations

from typing import Any

import pytest

from flows.prefect_tasks import TASKS, worth_retrying
from tasks.core.stage import DiskFullError
from tasks.gates.expectations import QualityGateError


def test_only_io_stages_retry_and_they_share_one_condition():
    assert {name for name, t in TASKS.items() if t.retries} == {"zoo", "fetch", "publish"}
    assert all(TASKS[n].retry_condition_fn is worth_retrying for n in ("zoo", "fetch", "publish"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        (ConnectionError("S3 endpoint refused the connection"), 3),
        (TimeoutError("read timed out"), 3),
        (QualityGateError("accuracy below its expectation"), 1),
        (DiskFullError("no space left under data/"), 1),
    ],
)
def test_a_verdict_fails_at_once_and_a_connection_error_is_retried(prefect_server: Any, error, attempts):
    from prefect import flow, task
    from prefect.settings import PREFECT_API_URL, temporary_settings

    calls: list[int] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=worth_retrying)
    def io_stage() -> None:
        calls.append(1)
        raise error

    @flow
    def one_stage() -> None:
        io_stage()

    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}), pytest.raises(type(error)):
        one_stage()
    assert len(calls) == attempts
