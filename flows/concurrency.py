"""One Prefect global concurrency limit per model, shared by every deployment.

A deployment's own ``concurrency_limit`` counts only that deployment's runs: a manual run
from the UI would still overlap the nightly on the same model. So each model's chain
(``flows/prefect_tasks.py: compress_model``) takes a slot of the global concurrency limit
``compress-model-<model>`` (``SLOTS`` = 1) before it starts, whichever deployment or
worker runs it. The server counts the slots, so the second run queues there, on any
machine. Slots are leases the holder renews; a killed holder's slot lapses after
``LEASE_S`` seconds, so a crash never leaves a model locked for good.

prefect.yaml declares the limit (its ``concurrency`` section, written from here by
``flows.cli sync``); ``python -m flows.cli limits`` creates the limits on a server, and a
run creates a missing one itself. Without a Prefect server (the ephemeral API of ``make
nightly`` lives and dies with its process) there is nothing to share: the model's S3
lease (``tasks/storage/lease.py``) is then the only lock, as it is also under a server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from tasks.storage.lease import LeaseBusy

log = logging.getLogger("pipeline")

TEMPLATE = "compress-model-{model}"
SLOTS = 1  # one run per model at a time
LEASE_S = 60.0  # a dead holder's slot lapses after this long (renewed while held)


def limit_name(model: str) -> str:
    """The global concurrency limit of ``model`` (Prefect forbids / % & > < in names)."""
    if any(c in model for c in "/%&><"):
        raise ValueError(f"model name {model!r} cannot name a Prefect concurrency limit (no / % & > <)")
    return TEMPLATE.format(model=model)


def declaration() -> dict[str, object]:
    """prefect.yaml's ``concurrency`` section (ignored by ``prefect deploy``, read by ``limits``)."""
    return {"per_model": {"limit": TEMPLATE, "slots": SLOTS, "lease_s": LEASE_S, "deployments": ["nightly", "manual"]}}


def server_url() -> str | None:
    """The Prefect API this process talks to, or None for the ephemeral one."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def ensure(models: list[str]) -> list[str]:
    """Create the missing limits of ``models`` on the server (an existing one, perhaps
    changed in the UI, is left as it is); returns the names created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    created = []
    with get_client(sync_client=True) as client:
        for name in map(limit_name, models):
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=SLOTS))
                    created.append(name)
                except ObjectAlreadyExists:  # another run created it meanwhile
                    pass
    return created


@contextmanager
def model_slot(model: str, on_busy: str = "wait", wait_s: float | None = None) -> Iterator[None]:
    """Hold ``model``'s slot for the block: ``on_busy`` ``wait`` queues (up to ``wait_s``
    seconds, default forever), ``skip`` raises ``LeaseBusy`` at once. A no-op without a server."""
    if on_busy not in ("wait", "skip"):
        raise ValueError(f"on_busy must be 'wait' or 'skip', got {on_busy!r}")
    if server_url() is None:
        yield
        return
    from prefect.concurrency.sync import concurrency

    name = limit_name(model)
    ensure([model])
    if on_busy == "wait" and _full(name):
        log.info("%s: another flow run holds Prefect concurrency limit %s; queued until it is free", model, name)
    # strict: a missing limit is an error (ensure just made it); but a failed lease renewal
    # must not cancel hours of compression mid-stage (Prefect's default under strict): the
    # model's S3 lease still guards it
    slot = concurrency(name, occupy=1, timeout_seconds=wait_s if on_busy == "wait" else None,
                       max_retries=0 if on_busy == "skip" else None, lease_duration=LEASE_S, strict=True,
                       raise_on_lease_renewal_failure=False)  # fmt: skip
    with ExitStack() as stack:
        try:  # acquisition only: an error raised by the block itself is not "busy"
            stack.enter_context(slot)
        except Exception as e:
            if not _locked(e):
                raise
            raise LeaseBusy(f"{model}: another flow run holds Prefect concurrency limit {name!r} ({on_busy})") from e
        log.info("%s: holds Prefect concurrency slot %s", model, name)
        yield


def _full(name: str) -> bool:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(name)
    return limit.active_slots >= limit.limit


def _locked(e: BaseException) -> bool:
    """A timed-out wait, or a refusal (HTTP 423) with no retries left."""
    cause = e.__cause__
    status = getattr(getattr(cause, "response", None), "status_code", None)
    return isinstance(e, TimeoutError) or status == 423
