"""The per-model Prefect concurrency limit, against a real `prefect server start`."""

from __future__ import annotations

import contextvars
import threading
import time
from pathlib import Path

import pytest
import yaml

from flows import concurrency
from tasks.storage.lease import LeaseBusy

REPO = Path(__file__).resolve().parents[2]


def test_prefect_yaml_declares_one_limit_per_model_for_nightly_and_manual():
    declared = yaml.safe_load((REPO / "prefect.yaml").read_text())["concurrency"]["per_model"]
    assert declared["limit"].format(model="minilm") == concurrency.limit_name("minilm") == "compress-model-minilm"
    assert declared["slots"] == 1 and set(declared["deployments"]) == {"nightly", "manual"}


def test_a_model_name_that_cannot_name_a_limit_is_refused():
    with pytest.raises(ValueError, match=r"'a/b' cannot name a Prefect concurrency limit"):
        concurrency.limit_name("a/b")


def test_without_a_server_the_slot_is_a_no_op(monkeypatch):
    monkeypatch.setattr(concurrency, "server_url", lambda: None)
    with concurrency.model_slot("m", "skip"), concurrency.model_slot("m", "skip"):
        pass  # nested: nothing is counted, the S3 lease is the lock


@pytest.mark.slow
def test_a_second_run_of_a_model_queues_on_the_server_or_skips(api):
    from prefect.client.orchestration import get_client

    model, order = f"conc-{time.time_ns()}", []
    with concurrency.model_slot(model):
        with get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name(concurrency.limit_name(model))
        assert (limit.limit, limit.active_slots) == (1, 1)  # created on first use, and held
        busy = rf"holds Prefect concurrency limit 'compress-model-{model}' \(skip\)"
        with pytest.raises(LeaseBusy, match=busy), concurrency.model_slot(model, "skip"):
            pass

        def second() -> None:
            with concurrency.model_slot(model, "wait"):
                order.append("second")

        waiter = threading.Thread(target=contextvars.copy_context().run, args=(second,))  # the API setting
        waiter.start()
        time.sleep(3)
        order.append("first done")  # the waiter is still queued behind this block
    waiter.join(60)
    assert order == ["first done", "second"]
    with concurrency.model_slot(model, "skip"):  # both released their slots
        pass
